package sync_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// The workloads of the standard library's own tests of Mutex and RWMutex
// (a critical section that must be exclusive, readers that must never see
// a writer, TryLock mixed in), written again here, run on this package's
// types with every counter checked. Under -race the detector also checks
// that the records add no race. With -tags nolockwatch they test sync.

// inModes runs f in the owner mode and in the records mode: their fast and
// slow paths differ.
func inModes(t *testing.T, f func(t *testing.T)) {
	for _, records := range []bool{false, true} {
		t.Run(fmt.Sprintf("records=%v", records), func(t *testing.T) {
			defer lwsync.SetRecords(lwsync.SetRecords(records))
			f(t)
		})
	}
}

// TestHammerMutex: goroutines increment a plain counter under the lock,
// some through TryLock; the total must be exact and no two must be inside
// at once. In both modes.
func TestHammerMutex(t *testing.T) { inModes(t, hammerMutex) }

func hammerMutex(t *testing.T) {
	const goroutines, rounds = 8, 2000
	var mu lwsync.Mutex
	var inside atomic.Int32
	counter := 0
	done := make(chan bool)
	for g := 0; g < goroutines; g++ {
		go func() {
			ok := true
			for i := 0; i < rounds; i++ {
				if i%3 == 0 {
					for !mu.TryLock() {
						runtime.Gosched()
					}
				} else {
					mu.Lock()
				}
				if inside.Add(1) != 1 {
					ok = false
				}
				counter++
				inside.Add(-1)
				mu.Unlock()
			}
			done <- ok
		}()
	}
	for g := 0; g < goroutines; g++ {
		if !<-done {
			t.Error("two goroutines were inside the critical section at once")
		}
	}
	if counter != goroutines*rounds {
		t.Errorf("counter %d; want %d", counter, goroutines*rounds)
	}
}

// TestHammerRWMutex: readers count themselves in and check that no writer
// is inside; writers check that nobody else is; RLocker and TryRLock mixed
// in. Every activity counter returns to zero. In both modes.
func TestHammerRWMutex(t *testing.T) {
	inModes(t, func(t *testing.T) {
		for _, procs := range []int{1, 4} {
			old := runtime.GOMAXPROCS(procs)
			hammerRW(t, 2, 4, 1000)
			hammerRW(t, 4, 8, 500)
			runtime.GOMAXPROCS(old)
		}
	})
}

func hammerRW(t *testing.T, writers, readers, rounds int) {
	var rw lwsync.RWMutex
	var activity atomic.Int32 // readers add 1, writers 10000
	var bad atomic.Int32
	shared := 0
	done := make(chan struct{}, writers+readers)
	reader := func(i int) {
		l := rw.RLocker()
		for r := 0; r < rounds; r++ {
			switch {
			case r%4 == 0:
				l.Lock()
			case r%4 == 1 && rw.TryRLock():
			default:
				rw.RLock()
			}
			if n := activity.Add(1); n < 1 || n >= 10000 {
				bad.Add(1)
			}
			_ = shared
			for k := 0; k < 10; k++ {
			}
			activity.Add(-1)
			if r%4 == 0 {
				l.Unlock()
			} else {
				rw.RUnlock()
			}
		}
		done <- struct{}{}
	}
	writer := func(i int) {
		for r := 0; r < rounds; r++ {
			if r%5 == 0 {
				for !rw.TryLock() {
					runtime.Gosched()
				}
			} else {
				rw.Lock()
			}
			if n := activity.Add(10000); n != 10000 {
				bad.Add(1)
			}
			shared++
			activity.Add(-10000)
			rw.Unlock()
		}
		done <- struct{}{}
	}
	for i := 0; i < max(writers, readers); i++ {
		if i < writers {
			go writer(i)
		}
		if i < readers {
			go reader(i)
		}
	}
	for i := 0; i < writers+readers; i++ {
		<-done
	}
	if bad.Load() != 0 {
		t.Errorf("%d rounds saw a writer together with anyone else", bad.Load())
	}
	if shared != writers*rounds || activity.Load() != 0 {
		t.Errorf("writes %d, activity %d; want %d, 0", shared, activity.Load(), writers*rounds)
	}
}
