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
