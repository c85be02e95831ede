package lockreg

import (
	"testing"
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
