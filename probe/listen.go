package probe

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A listener is the control socket: a unix stream socket made with
// golang.org/x/sys/unix rather than package net, which the program would
// otherwise link for one socket. The serving loop waits for it in ppoll(2)
// on a thread of its own, not in the runtime's network poller: a goroutine
// waiting there would keep Go's runtime from ever ending a program whose
// other goroutines are all blocked (deadcheck.go). The connections it
// accepts are non-blocking *os.File, which wait in the poller (deadlines
// and Close wake them) only while a request is served.
//
// The loop owns the socket's descriptor and closes it when it ends; the
// path is removed by whoever stops the loop, at once. wake, an eventfd(2),
// wakes the loop.
type listener struct {
	fd   int
	path string

	mu     sync.Mutex
	wakeFd int // -1 once closed
}

// listenUnix binds a unix stream socket to path, mode 0600, and listens.
func listenUnix(path string) (*listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "bind", Path: path, Err: err}
	}
	// Until the chmod, the socket has the umask's mode; the run directory
	// (0700) and the peer check keep other users out meanwhile.
	if err := os.Chmod(path, 0o600); err != nil {
		unix.Close(fd)
		return nil, errors.Join(err, os.Remove(path))
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return nil, errors.Join(os.NewSyscallError("listen", err), os.Remove(path))
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, errors.Join(os.NewSyscallError("eventfd", err), os.Remove(path))
	}
	return &listener{fd: fd, path: path, wakeFd: wfd}, nil
}

// wait waits in ppoll(2) for a connection, a wake or the end of d (d < 0:
// no end; with acceptToo false, it does not wait for connections). It
// returns whether a connection may be waiting. It is called by the loop
// only.
func (l *listener) wait(d time.Duration, acceptToo bool) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(l.wakeFd), Events: unix.POLLIN}, {Fd: int32(l.fd), Events: unix.POLLIN}}
	if !acceptToo {
		fds = fds[:1]
	}
	var ts *unix.Timespec
	if d >= 0 {
		t := unix.NsecToTimespec(int64(d))
		ts = &t
	}
	_, err := unix.Ppoll(fds, ts, nil)
	if err == unix.EINTR {
		return false, nil // a signal: the loop looks at the time and waits again
	}
	if err != nil {
		return false, os.NewSyscallError("ppoll", err)
	}
	if fds[0].Revents != 0 {
		var b [8]byte
		_, _ = unix.Read(l.wakeFd, b[:]) // non-blocking: clears the count
	}
	return acceptToo && fds[1].Revents != 0, nil
}

// accept takes a waiting connection, or returns nil and a nil error if
// none waits. It is called by the loop only.
func (l *listener) accept() (*os.File, error) {
	nfd, _, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	switch err {
	case nil:
		return os.NewFile(uintptr(nfd), l.path), nil
	case unix.EAGAIN, unix.ECONNABORTED, unix.EINTR:
		return nil, nil
	}
	return nil, os.NewSyscallError("accept4", err)
}

// wake makes the loop's wait return.
func (l *listener) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wakeFd >= 0 {
		var one = [8]byte{1}
		_, _ = unix.Write(l.wakeFd, one[:])
	}
}

// close closes the socket and the eventfd, once the loop waits no more.
// It is called by the loop only, as it ends.
func (l *listener) close() error {
	l.mu.Lock()
	wfd := l.wakeFd
	l.wakeFd = -1
	l.mu.Unlock()
	return errors.Join(os.NewSyscallError("close", unix.Close(l.fd)), os.NewSyscallError("close", unix.Close(wfd)))
}

// remove removes the socket's file: no client connects to it from then on.
func (l *listener) remove() error {
	err := os.Remove(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
