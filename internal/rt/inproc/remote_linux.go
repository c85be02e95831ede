//go:build linux && (amd64 || arm64)

package inproc

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// memfdLink is what /proc/PID/fd/N reads for the arena's memfd.
const memfdLink = "/memfd:lockwatch-dropin (deleted)"

// OpenRemote maps the drop-in arena of process pid, read-only: the file
// dir/ArenaFile(pid) when dir is a run directory, else the memfd the
// process keeps (found among /proc/PID/fd, which needs the rights to read
// the process's descriptors: the same user, or root). ErrNoArena if it has
// none.
func OpenRemote(pid int, dir string) (*Remote, error) {
	var f *os.File
	if dir != "" {
		g, err := os.OpenFile(filepath.Join(dir, ArenaFile(pid)), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			f = g
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if f == nil {
		g, err := openMemfd(pid)
		if err != nil {
			return nil, err
		}
		f = g
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() < int64(ArenaSize) {
		return nil, fmt.Errorf("pid %d: drop-in arena of %d bytes; want %d", pid, fi.Size(), ArenaSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(ArenaSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("pid %d: mapping its drop-in arena: %w", pid, err)
	}
	a, err := arenaOf(mem)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	if a.hdr.pid != uint64(pid) {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("pid %d: its drop-in arena is process %d's (a file left by an earlier process)", pid, a.hdr.pid)
	}
	return &Remote{PID: pid, Start: a.hdr.start, Mono0: a.hdr.mono0, Wall0: a.hdr.wall0, a: a, mem: mem}, nil
}

// openMemfd opens the arena memfd of process pid through /proc/PID/fd.
func openMemfd(pid int) (*os.File, error) {
	if !hasMemfdMapping(pid) {
		return nil, ErrNoArena
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its descriptors: %w", pid, err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if l, err := os.Readlink(p); err != nil || l != memfdLink {
			continue
		}
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("pid %d: opening its drop-in arena: %w", pid, err)
		}
		return f, nil
	}
	return nil, ErrNoArena
}

// hasMemfdMapping reports whether /proc/PID/maps shows the arena memfd
// mapped (a cheap test before the descriptors are listed).
func hasMemfdMapping(pid int) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return true // let the descriptors say
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 0; sc.Scan() && n < 1<<20; n++ {
		if strings.HasSuffix(sc.Text(), memfdLink) {
			return true
		}
	}
	return sc.Err() != nil
}

func unmapArena(mem []byte) error { return unix.Munmap(mem) }
