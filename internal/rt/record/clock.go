package record

import (
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // for go:linkname
)

// Nanotime is the runtime's CLOCK_MONOTONIC reading. On Linux that clock is
// system-wide, so a time recorded by one process can be compared with a
// reading of any other; it costs one vDSO call where time.Now costs two.
//
//go:linkname Nanotime runtime.nanotime
func Nanotime() int64

// The coarse clock: a copy of Nanotime that a ticker goroutine refreshes
// every CoarseTick, so that reading it costs one load (a clock read alone
// costs 5x an uncontended sync.Mutex). The ticker runs only while the clock
// is used: it stops itself coarseIdle after it was last started, and marks
// the value stale by setting its lowest bit; the next Coarse call that sees
// the bit reads Nanotime itself and starts the ticker again (once a second
// under steady use, ~1 us). So a Coarse reading is never later than the
// true time, and earlier by at most CoarseTick plus however late the
// scheduler runs the ticker.
const (
	CoarseTick = time.Millisecond
	coarseIdle = time.Second
)

var coarse struct {
	_   [64]byte // a line of its own: readers on every core load it
	now atomic.Int64
	_   [56]byte

	mu      sync.Mutex
	running bool  // a ticker goroutine runs; Called with mu held.
	stopAt  int64 // when it stops
}

func init() { coarse.now.Store(1) } // stale: the first reader starts the ticker

// Coarse returns the monotonic clock (Nanotime's scale) to about
// CoarseTick; see above for its error.
func Coarse() int64 {
	if t := coarse.now.Load(); t&1 == 0 {
		return t
	}
	return wakeCoarse()
}

// wakeCoarse reads the clock and starts the ticker if it is not running.
func wakeCoarse() int64 {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	now := Nanotime() &^ 1
	coarse.stopAt = now + int64(coarseIdle)
	coarse.now.Store(now)
	if !coarse.running {
		coarse.running = true
		go tickCoarse()
	}
	return now
}

func tickCoarse() {
	t := time.NewTicker(CoarseTick)
	defer t.Stop()
	for range t.C {
		coarse.mu.Lock()
		now := Nanotime() &^ 1
		if now >= coarse.stopAt {
			coarse.now.Store(now | 1)
			coarse.running = false
			coarse.mu.Unlock()
			return
		}
		coarse.now.Store(now)
		coarse.mu.Unlock()
	}
}

// CoarseRunning reports whether the ticker goroutine runs; tests that check
// for leaked goroutines wait until it does not.
func CoarseRunning() bool {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	return coarse.running
}

// Wall converts a reading of Nanotime (or Coarse) to wall-clock time, given
// a pair of readings taken together now.
func Wall(t, mono int64, now time.Time) time.Time {
	return now.Add(time.Duration(t - mono))
}
