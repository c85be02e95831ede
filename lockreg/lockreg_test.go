package lockreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

func openT(t *testing.T, dir string, o Options) *Registry {
	t.Helper()
	r, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestLockUnlockRecords(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	m, err := r.Mutex("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Locks) != 1 || s.Locks[0].Name != "a" || s.Locks[0].HolderPID != r.Self().PID || s.Locks[0].Holder == nil {
		t.Fatalf("got locks %+v; want a held by %d with a record", s.Locks, r.Self().PID)
	}
	h := s.Locks[0].Holder
	if h.Goroutine != curGoid() || h.Start != r.Self().Start {
		t.Errorf("got holder %+v; want goroutine %d start %d", h, curGoid(), r.Self().Start)
	}
	frames, ok := s.Stack(h.Identity(), h.Stack)
	if !ok || len(frames) == 0 || frames[0].Func != "github.com/lockwatch/lockwatch/lockreg.TestLockUnlockRecords" {
		t.Errorf("got acquire stack %v (found %v); want it to start at the test function", frames, ok)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Unlock: got %v; want ErrNotHeld", err)
	}
	s, _ = arena.ReadSnapshot(dir)
	if s.Locks[0].Held() || s.Locks[0].Holder != nil {
		t.Errorf("after Unlock got %+v; want free", s.Locks[0])
	}
	var kinds []arena.EventKind
	for _, e := range s.Events {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 2 || kinds[0] != arena.EventAcquire || kinds[1] != arena.EventRelease {
		t.Errorf("got events %v; want [acquire release]", kinds)
	}
}

func TestCancelLeavesLockUnchanged(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	m, _ := r.Mutex("a")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, _ := arena.ReadSnapshot(dir)
	ctx, cancel := context.WithTimeout(context.Background(), quiescent)
	defer cancel()
	if err := m.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want DeadlineExceeded", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Lock(ctx2) }()
	waitForWaiter(t, dir, os.Getpid()) // it is in the slow path, about to sleep
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want Canceled", err)
	}
	after, _ := arena.ReadSnapshot(dir)
	if a, b := after.Locks[0], before.Locks[0]; a.Word != b.Word || !sameHolder(*a.Holder, *b.Holder) {
		t.Errorf("lock changed by cancelled acquires: before %+v after %+v", b, a)
	}
	if len(after.Waiters) != 0 || after.Locks[0].Waiting != 0 {
		t.Errorf("got waiters %+v (waiting %d); want none left", after.Waiters, after.Locks[0].Waiting)
	}
	if ok, _ := m.TryLock(); ok {
		t.Error("TryLock of a held lock succeeded")
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.TryLock(); !ok || err != nil {
		t.Errorf("TryLock of a free lock: got %v, %v; want true, nil", ok, err)
	}
}

// sameHolder compares holder records; Since is converted from the monotonic
// clock at each snapshot, so it may differ by the conversion's jitter.
func sameHolder(a, b arena.Holder) bool {
	d := a.Since.Sub(b.Since)
	a.Since, b.Since = time.Time{}, time.Time{}
	return a == b && d < time.Millisecond && d > -time.Millisecond
}

func TestRemoveIfClean(t *testing.T) {
	dir := runDir(t)
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.Mutex("a")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if removed, err := arena.RemoveIfClean(dir); removed || err != nil {
		t.Fatalf("with a process running: removed %v, %v; want kept", removed, err)
	}
	r.Close() // exits cleanly, but still holds the lock
	if removed, err := arena.RemoveIfClean(dir); removed || err != nil {
		t.Fatalf("with a lock held: removed %v, %v; want kept", removed, err)
	}
	rd, err := arena.OpenDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	a, err := arena.OpenArena(rd, true, robust.ok) // r's own mapping is gone with Close
	if err != nil {
		t.Fatal(err)
	}
	a.Lock(m.idx).Word.Store(0) // as if it had unlocked before closing
	if err := a.Unmap(); err != nil {
		t.Fatal(err)
	}
	if removed, err := arena.RemoveIfClean(dir); !removed || err != nil {
		t.Fatalf("clean run: removed %v, %v; want removed", removed, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run directory still there: %v", err)
	}
}

// TestAcquireStackKnownAndNew: the first acquire from a site captures its
// stack and writes it to the dictionary; later ones from the same site
// only hash the walk (stackID). Both must name the same id, whose frames in
// the dictionary start at the caller of Lock (or TryLock), with either
// unwinder; another site gets another id.
func TestAcquireStackKnownAndNew(t *testing.T) {
	old := record.FramePointers()
	defer record.SetFramePointers(old)
	for _, fp := range []bool{true, false} {
		if record.SetFramePointers(fp); record.FramePointers() != fp {
			continue // no frame-pointer unwinder here
		}
		dir := runDir(t)
		r := openT(t, dir, Options{})
		m, _ := r.Mutex("a")
		holderStack := func() uint64 {
			t.Helper()
			s, err := arena.ReadSnapshot(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Locks) != 1 || s.Locks[0].Holder == nil {
				t.Fatalf("got locks %+v; want a held, with a record", s.Locks)
			}
			h := s.Locks[0].Holder
			frames, ok := s.Stack(h.Identity(), h.Stack)
			if !ok || len(frames) < 2 || !strings.HasSuffix(frames[0].Func, "lockreg.lockAt") ||
				frames[1].Func != "github.com/lockwatch/lockwatch/lockreg.TestAcquireStackKnownAndNew" {
				t.Errorf("frame pointers %v: stack %x is %v (found %v); want it to start at lockAt, called by the test", fp, h.Stack, frames, ok)
			}
			return h.Stack
		}
		var ids []uint64
		for _, try := range []bool{false, false, true, true} {
			if err := lockAt(m, try); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, holderStack())
			if err := m.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
		if ids[0] != ids[1] || ids[2] != ids[3] || ids[0] == ids[2] {
			t.Errorf("frame pointers %v: stack ids %x; want Lock's twice, then TryLock's twice, different", fp, ids)
		}
	}
}

// lockAt takes m by Lock, or by TryLock if try; its call sites in the
// test are the stacks recorded.
//
//go:noinline
func lockAt(m *Mutex, try bool) error {
	if try {
		if ok, err := m.TryLock(); !ok || err != nil {
			return fmt.Errorf("TryLock: %v, %v; want true, nil", ok, err)
		}
		return nil
	}
	return m.Lock(context.Background())
}
