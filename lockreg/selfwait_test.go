package lockreg

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestNoSnapshotShowsAHolderWaitingForItself: processes take one lock in a
// loop, contended, while this process reads snapshots. No snapshot may show
// a goroutine both holding a lock and waiting for it: a reader would take
// that for a goroutine deadlocked on itself (a false "cycle" finding, seen
// once in 100 runs of the fixed demo under lockwatch run).
func TestNoSnapshotShowsAHolderWaitingForItself(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	if _, err := r.Mutex("test.lock"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c := startRole(t, true, "spin", dir)
		c.expect("spinning")
		t.Cleanup(c.kill)
	}
	bad := 0
	for n := 0; n < 3000 && bad == 0; n++ {
		s, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range s.Waiters {
			h := s.Locks[w.Lock].Holder
			if h != nil && h.PID == w.PID && h.Goroutine == w.Goroutine {
				bad++
				t.Errorf("snapshot %d: pid %d goroutine %d holds %q and waits for it", n, w.PID, w.Goroutine, w.LockName)
			}
		}
	}
}

// TestSnapshotKeepsRealSelfDeadlock: a goroutine that holds a lock and asks
// for it again is deadlocked on itself, and every snapshot must say so
// (holder and waiter, the same goroutine), whatever the re-read of the pair
// decides. With the re-read deciding by time, a coarse-clock hold could
// look younger than the wait; it decides by the record's sequence number.
func TestSnapshotKeepsRealSelfDeadlock(t *testing.T) {
	r := openT(t, runDir(t), Options{})
	m, err := r.Mutex("self.lock")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	goid := make(chan int64, 1)
	go func() {
		if err := m.Lock(ctx); err != nil {
			done <- err
			return
		}
		goid <- curGoid()
		done <- m.Lock(ctx) // blocks until cancel: this goroutine holds it
	}()
	g := <-goid
	deadline := time.Now().Add(2 * time.Minute) // bounds a broken build only
	for seen := 0; seen < 200; {
		s, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Waiters) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the second Lock never showed as a waiter")
			}
			runtime.Gosched()
			continue
		}
		seen++
		h := s.Locks[s.Waiters[0].Lock].Holder
		if w := s.Waiters[0]; h == nil || h.Goroutine != g || w.Goroutine != g {
			t.Fatalf("snapshot %d: holder %+v, waiter goroutine %d; want goroutine %d holding and waiting", seen, h, w.Goroutine, g)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("second Lock: %v; want context.Canceled", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}
