package lockreg

import (
	"testing"
	"time"
)

// TestNoSnapshotShowsAHolderWaitingForItself: processes take one lock in a
// loop, contended, while this process reads snapshots. No snapshot may show
// a goroutine both holding a lock and waiting for it: a reader would take
// that for a goroutine deadlocked on itself (a false "cycle" finding, seen
// once in 100 runs of the fixed demo under lockwatch run). Two causes were
// found this way: the reader's holder and waiter reads are moments apart,
// and an uncontended acquire is stamped by the coarse clock, so it can carry
// an earlier time than the wait before it (a check by time kept the pair).
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
	bad, pairs := 0, 0
	for n := 0; n < 3000 && bad == 0; n++ {
		s, err := r.snapshot()
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
		if len(s.Waiters) > 0 && s.Locks[0].Holder != nil {
			pairs++
		}
	}
	if pairs == 0 {
		// Without contention seen, the test proved nothing.
		t.Fatal("no snapshot showed a holder and a waiter at once: the children did not contend")
	}
}

// TestSnapshotKeepsARealSelfWait: a goroutine that took the lock and asks for
// it again is deadlocked on itself, and every snapshot must say so (the check
// above must not drop a real self-wait as a torn view).
func TestSnapshotKeepsARealSelfWait(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	if _, err := r.Mutex("test.lock"); err != nil {
		t.Fatal(err)
	}
	c := startRole(t, true, "selflock", dir)
	c.expect("locked")
	t.Cleanup(c.kill)
	deadline := time.Now().Add(2 * time.Minute) // bounds a broken build only
	for {
		s, err := r.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Waiters) == 1 {
			// The waiter is recorded: from now on every snapshot shows the pair.
			for n := 0; n < 50; n++ {
				if n > 0 {
					if s, err = r.snapshot(); err != nil {
						t.Fatal(err)
					}
				}
				if len(s.Waiters) != 1 {
					t.Fatalf("snapshot %d: %d waiters, want the self-waiting goroutine", n, len(s.Waiters))
				}
				w, h := s.Waiters[0], s.Locks[0].Holder
				if h == nil || h.PID != w.PID || h.Goroutine != w.Goroutine {
					t.Fatalf("snapshot %d: holder %+v, waiter %+v: want the same goroutine (a real self-deadlock)", n, h, w)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the child's second Lock was never recorded as a wait")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition in another process, with a deadline
	}
}
