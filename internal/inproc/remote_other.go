//go:build !linux

package inproc

import "errors"

// OpenRemote reads another process's drop-in records on Linux only.
func OpenRemote(pid int, dir string) (*Remote, error) {
	return nil, errors.New("reading another process's drop-in mutexes needs Linux")
}

func unmapArena(mem []byte) error { return nil }
