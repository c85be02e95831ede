//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	gosync "sync"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
)

// TestSnapshotWhileHammering reads the table over and over while the
// hammers run: under -race this proves that the records are read without
// a race, and every record read is consistent (goroutine ids positive,
// readers within the hammer's count).
func TestSnapshotWhileHammering(t *testing.T) {
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	snaps := 0
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := inproc.Take(0)
			snaps++
			for _, l := range s.Locks {
				if l.Holder.Goroutine < 0 || len(l.Readers) > 64 {
					t.Errorf("inconsistent record %+v", l)
				}
				for _, w := range l.Waiters {
					if w.Goroutine <= 0 || len(w.Stack) == 0 {
						t.Errorf("waiter record %+v", w)
					}
				}
			}
		}
	})
	hammerRW(t, 4, 8, 300)
	TestHammerMutex(t)
	close(stop)
	wg.Wait()
	if snaps == 0 {
		t.Error("no snapshot taken during the hammer")
	}
}
