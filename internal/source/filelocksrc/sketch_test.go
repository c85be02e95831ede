package filelocksrc

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/lockstate"
)

// locks maps a snapshot's flock locks' paths to their holders' pids,
// sorted, and their waiters'.
func locks(snap *lockstate.Snapshot) (holders, waiters map[string][]int) {
	holders, waiters = map[string][]int{}, map[string][]int{}
	for _, l := range snap.Locks {
		for _, h := range l.Holders {
			holders[l.Name] = append(holders[l.Name], h.PID)
		}
		for _, w := range l.Waiters {
			waiters[l.Name] = append(waiters[l.Name], w.PID)
		}
		slices.Sort(holders[l.Name])
	}
	return holders, waiters
}

// A sketch has the awaited lock only, with all its holders (a child that
// inherited the descriptor too) and its waiter, whichever of them it is
// the knot of; the holder's descriptors, and the child's, are compared with
// the lock's reference, not stat'ed one by one; the full read has every
// lock of the holder.
func TestSketchAwaitedOnly(t *testing.T) {
	path, f := lockedFile(t)
	child := inheritor(t, f)
	var others []string
	for _, name := range []string{"b", "c"} {
		p := filepath.Join(t.TempDir(), name)
		g, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		if err := unix.Flock(int(g.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		others = append(others, p)
	}
	w := flockWaiter(t, path)
	me := os.Getpid()
	for _, pid := range []int{me, child, w} {
		s := New(pid)
		snap, err := s.Sketch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		holders, waiters := locks(snap)
		if len(snap.Locks) != 1 || !slices.Equal(holders[path], sorted(me, child)) || !slices.Equal(waiters[path], []int{w}) {
			t.Errorf("sketch of pid %d: holders %v, waiters %v; want only %s, held by %v, awaited by %d", pid, holders, waiters, path, sorted(me, child), w)
		}
		for _, p := range []int{me, child} {
			if !compared(s, p) {
				t.Errorf("sketch of pid %d: pid %d's descriptors were not compared with the reference", pid, p)
			}
		}
	}
	snap, err := New(me).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	holders, _ := locks(snap)
	for _, p := range append(others, path) {
		if len(holders[p]) == 0 {
			t.Errorf("full read: no holder of %s: %v", p, holders)
		}
	}
}

// A sketch's comparisons are not the next read's: a lock released (its
// waiter took it and left) and taken again through a new open file at the
// same descriptor number between the sketch and the full read is not held
// by the child that shares the old open file, although the sketch found it
// on the reference's.
func TestSketchRetakenBeforeRead(t *testing.T) {
	path, f := lockedFile(t)
	child := inheritor(t, f)
	w := flockWaiter(t, path)
	s := New(os.Getpid())
	snap, err := s.Sketch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if holders, _ := locks(snap); !slices.Equal(holders[path], sorted(os.Getpid(), child)) {
		t.Fatalf("sketch: holders %v; want %v", holders, sorted(os.Getpid(), child))
	}
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(w, &ws, 0, nil); err != nil { // flock(1) took it, ran true, and left
		t.Fatal(err)
	}
	retake(t, path, fd)
	got, _ := holdersOf(t, s, path)
	if want := []int{os.Getpid()}; !slices.Equal(got, want) {
		t.Fatalf("holders %v after the lock was taken again through another open file at fd %d; want %v (pid %d shares the old one)", got, fd, want, child)
	}
}

// The knot of a process whose descriptors are mostly on files it flock'ed
// has them read by their fdinfo files, not stat'ed: every lock is held by
// it, through the descriptor that took it (a child that inherited one
// shares that one's), named by its path; another open of a locked file,
// its lowest descriptor on it, holds nothing, nor does a child that
// inherited that one.
func TestTargetReadByFdinfo(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	var files []*os.File
	var other *os.File
	for i := range byInfoMin + 6 {
		p := filepath.Join(dir, strconv.Itoa(i))
		if i == 0 {
			var err error
			other, err = os.Create(p) // the lower descriptor on file 0: not the lock's
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close() })
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		paths, files = append(paths, p), append(files, f)
	}
	child := inheritor(t, files[1])
	opener := inheritor(t, other)
	me := os.Getpid()
	s := New(me)
	snap, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	tab := s.tables[me]
	s.mu.Unlock()
	if tab == nil || tab.stat || tab.refs != nil {
		t.Fatalf("this process's descriptors were not read by their fdinfo files: %+v", tab)
	}
	holders, _ := locks(snap)
	if len(snap.Locks) != len(paths) {
		t.Errorf("%d locks; want %d: %v", len(snap.Locks), len(paths), holders)
	}
	for i, p := range paths {
		want := []int{me}
		if i == 1 {
			want = sorted(me, child)
		}
		if !slices.Equal(holders[p], want) {
			t.Errorf("holders of %s: %v; want %v (pid %d has file 0 open through another open file)", p, holders[p], want, opener)
		}
	}
}

// A sketch with no awaited lock in the knot leaves its lock table to the
// full read (nothing to confirm); a sketch with one does not: the full
// read, which confirms its findings, reads the table again.
func TestSketchTableToRead(t *testing.T) {
	path, _ := lockedFile(t)
	for _, waited := range []bool{false, true} {
		if waited {
			flockWaiter(t, path)
		}
		reads := 0
		s := New(os.Getpid())
		s.read = func() ([]byte, error) {
			reads++
			return os.ReadFile("/proc/locks")
		}
		sketch, err := s.Sketch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		full, err := s.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if waited {
			want = 2
		}
		if sh, _ := locks(sketch); len(sketch.Locks) != want-1 || reads != want {
			t.Errorf("awaited %v: the sketch's locks %v, and %d reads of the table for it and a full read; want %d locks and %d reads", waited, sh, reads, want-1, want)
		}
		if fh, _ := locks(full); len(fh[path]) != 1 {
			t.Errorf("awaited %v: the full read's locks %v; want %s's", waited, fh, path)
		}
	}
}
