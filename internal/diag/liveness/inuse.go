package liveness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// HoldUnused proves that no process uses the files of the directory dir:
// it takes a write lease (fcntl F_SETLEASE) on each of its regular files,
// which the kernel grants only while no other open file refers to it: no
// descriptor of any process, of any user or namespace, and no mapping,
// which holds its file open. So a run nobody can read the records of (an
// arena of another format) is proved ended when no process maps, or holds
// open, any of its files. While the leases are held, a process that opens
// one of the files waits in open until release is called (at most the
// kernel's lease-break-time). It returns release, to call once the
// directory is removed; or the name of a file in use; or why it cannot
// tell (a file system without leases), with nothing held.
func HoldUnused(dir string) (release func(), inUse string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", err
	}
	var fds []int
	release = func() {
		for _, fd := range fds {
			unix.Close(fd) // the lease goes with its file
		}
		fds = nil
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // a socket or a symbolic link: no file of the run's records
		}
		name := filepath.Join(dir, e.Name())
		fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed meanwhile
		}
		if err != nil {
			release()
			return nil, "", fmt.Errorf("liveness: %s: %w", name, err)
		}
		fds = append(fds, fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue // replaced by something else meanwhile: not a file of the run
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
			release()
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) {
				return nil, e.Name(), nil
			}
			return nil, "", fmt.Errorf("liveness: %s: cannot tell whether a process uses it (no file lease: %w)", name, err)
		}
	}
	return release, "", nil
}
