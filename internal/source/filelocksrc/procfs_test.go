package filelocksrc

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProcDirs: a process's directory is opened once and its files read
// relative to it; at most maxProcDirs stay open, however many processes a
// read meets; a process with no directory falls back to paths, and
// close leaves nothing open.
func TestProcDirs(t *testing.T) {
	root := t.TempDir()
	n := maxProcDirs + 10
	for pid := 1; pid <= n; pid++ {
		dir := filepath.Join(root, strconv.Itoa(pid), "fd")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "3"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := procfs{root: root}
	d := newProcDirs(p, "fd")
	for round := 0; round < 2; round++ {
		for pid := 1; pid <= n; pid++ {
			f, err := d.openat(pid, "3", p.path(pid, "fd/3"))
			if err != nil {
				t.Fatalf("pid %d: %v", pid, err)
			}
			unix.Close(f)
			if len(d.open) > maxProcDirs {
				t.Fatalf("%d directories open; want at most %d", len(d.open), maxProcDirs)
			}
		}
	}
	if _, err := d.openat(n+1, "3", p.path(n+1, "fd/3")); err == nil {
		t.Error("a process with no directory: opened; want an error")
	}
	d.close()
	if len(d.open) != 0 {
		t.Errorf("%d directories left open after close", len(d.open))
	}
	var nilDirs *procDirs
	if f, err := nilDirs.openat(1, "3", p.path(1, "fd/3")); err != nil {
		t.Errorf("no directories: %v; want the path opened", err)
	} else {
		unix.Close(f)
	}
}

// TestFdinfoInStopsOnOtherInode: fdinfoIn names a descriptor's inode and
// lists the locks held through it; asked for some inodes only, it stops
// after its first read for a descriptor on another (an empty set), and
// reads on, every lock line, for one on them.
func TestFdinfoInStopsOnOtherInode(t *testing.T) {
	path, f := lockedFile(t)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	p, me, fd := procfs{root: "/proc"}, os.Getpid(), int(f.Fd())
	var buf []byte
	for _, tt := range []struct {
		inodes map[uint64]bool
		locks  int
	}{{nil, 1}, {map[uint64]bool{st.Ino: true}, 1}, {map[uint64]bool{st.Ino + 1: true}, 0}} {
		ino, set, err := p.fdinfoIn(nil, me, fd, &buf, tt.inodes)
		if err != nil || ino != st.Ino || len(set) != tt.locks {
			t.Errorf("inodes %v: inode %d, %d locks, %v; want inode %d, %d locks", tt.inodes, ino, len(set), err, st.Ino, tt.locks)
		}
	}
	if ino, ok := fdinfoIno([]byte("pos:\t0\nflags:\t02\nmnt_id:\t27\nino:\t4242\nlock:\t1: FLOCK ...\n")); ino != 4242 || !ok {
		t.Errorf("fdinfoIno: %d, %v; want 4242", ino, ok)
	}
	if _, ok := fdinfoIno([]byte("pos:\t0\nflags:\t02\nmnt_id:\t27\nino:\t42")); ok {
		t.Error("fdinfoIno of a line cut short: found; want not found (read on)")
	}
}
