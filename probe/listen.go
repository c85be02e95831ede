package probe

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// A listener is the control socket: a unix stream socket made with
// golang.org/x/sys/unix rather than package net, which the program would
// otherwise link for one socket. Its descriptor and those of the
// connections it accepts are non-blocking, so that, as *os.File, they wait
// in the runtime's poller (deadlines and Close wake them), never in a
// thread.
type listener struct {
	f    *os.File
	path string
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
	return &listener{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

// accept waits for a connection; after Close it returns an error that wraps
// os.ErrClosed.
func (l *listener) accept() (*os.File, error) {
	raw, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = raw.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return aerr != unix.EAGAIN // else wait in the poller
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, os.NewSyscallError("accept4", aerr)
	}
	return os.NewFile(uintptr(nfd), l.path), nil
}

// Close closes the socket, waking a pending accept, and removes its file.
func (l *listener) Close() error {
	return errors.Join(l.f.Close(), os.Remove(l.path))
}
