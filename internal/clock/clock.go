// Package clock is a coarse monotonic clock for hot paths: reading it costs
// two loads from one cache line, where the runtime's CLOCK_MONOTONIC reading
// (a vDSO call) costs 20-25 ns on a KVM guest (clocksource kvm-clock).
//
// A ticker goroutine stores CLOCK_MONOTONIC nanoseconds into an atomic every
// period (1 ms for Process). Now returns that value, so it is the exact
// CLOCK_MONOTONIC time of a moment at most one period plus the ticker's
// scheduling delay before the call, and never later than the call. Values
// are comparable with any other CLOCK_MONOTONIC reading of any process on
// the machine (on Linux the clock is system-wide).
//
// The ticker parks itself when nobody read the clock for idleAfter (100 ms
// for Process), so an idle program does not wake up a thousand times a
// second. Detecting idleness costs the readers nothing: every idleAfter the
// ticker sets the state word to "probing", and the first reader to see it
// sets it back to "running" (one store per idleAfter, whoever reads); a
// ticker that finds "probing" still there a period of idleAfter later parks.
// A reader that finds the clock parked reads the exact time, publishes it
// and wakes the ticker; until it runs again, readers get the exact time.
//
//	c := clock.Process
//	c.Start()
//	defer c.Stop()
//	t := c.Now() // CLOCK_MONOTONIC ns, at most ~1 ms old
package clock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname
)

// Exact returns the runtime's CLOCK_MONOTONIC reading, in nanoseconds: one
// vDSO call. Use it where a decision depends on the time (deadlines).
//
//go:linkname Exact runtime.nanotime
func Exact() int64

// States of the state word.
const (
	stopped = iota // no ticker: Now reads the exact time
	running        // the ticker keeps now fresh
	probing        // running, and the ticker asks whether anyone reads
	parked         // the ticker sleeps until a reader wakes it
	waking         // a reader is waking the ticker
)

// A Clock is a coarse monotonic clock. Its methods are safe for concurrent
// use. The zero value is not usable; use New, or the process's shared
// Process.
type Clock struct {
	_     [64]byte // keep the hot line to itself
	state atomic.Uint32
	now   atomic.Int64
	_     [52]byte

	period, idleAfter time.Duration
	wake              chan struct{} // a token wakes a parked ticker

	mu   sync.Mutex
	refs int           // Start calls not yet matched by Stop
	stop chan struct{} // closed to stop the ticker
	done chan struct{} // closed when the ticker has returned
}

// Process is this process's coarse clock, ticking every millisecond and
// parking after 100 ms without readers: lockreg and the drop-in locks share
// it, so that a process runs one ticker whatever it uses. Users Start it and
// Stop it when done; the ticker runs while any user has it started.
var Process = New(time.Millisecond, 100*time.Millisecond)

// New returns a stopped clock that, once started, ticks every period and
// parks after idleAfter without readers. Until Start, Now reads the exact
// time.
func New(period, idleAfter time.Duration) *Clock {
	return &Clock{period: period, idleAfter: max(idleAfter, period), wake: make(chan struct{}, 1)}
}

// Now returns the CLOCK_MONOTONIC time in nanoseconds, at most one period
// plus the ticker's scheduling delay old, never ahead of the exact time.
func (c *Clock) Now() int64 {
	if c.state.Load() == running {
		return c.now.Load()
	}
	return c.slow()
}

// slow handles every state but running.
func (c *Clock) slow() int64 {
	for {
		switch c.state.Load() {
		case running:
			return c.now.Load()
		case probing:
			// The ticker runs: now is fresh. Tell it we read.
			c.state.CompareAndSwap(probing, running)
			return c.now.Load()
		case parked:
			if !c.state.CompareAndSwap(parked, waking) {
				continue
			}
			t := Exact()
			c.now.Store(t) // before running: whoever sees running sees a fresh value
			c.state.CompareAndSwap(waking, running)
			select {
			case c.wake <- struct{}{}:
			default: // a token is pending already
			}
			return t
		case waking:
			// Another reader is storing the exact time: wait for it rather
			// than read the exact time ourselves, which would make our next
			// read go back to its (earlier) value.
			runtime.Gosched()
		default: // stopped
			return Exact()
		}
	}
}

// Start starts the ticker unless it runs already. Each Start must be matched
// by a Stop.
func (c *Clock) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs++
	if c.refs > 1 {
		return
	}
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	c.now.Store(Exact())
	c.state.Store(running)
	go c.run(c.stop, c.done)
}

// Stop undoes one Start; the last one stops the ticker and waits for it to
// return. Now then reads the exact time.
func (c *Clock) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == 0 {
		return
	}
	c.refs--
	if c.refs > 0 {
		return
	}
	close(c.stop)
	<-c.done
	// The ticker is gone; a reader waking it meanwhile fails its
	// CAS(waking, running) after this store, so stopped stays.
	c.state.Store(stopped)
}

// run is the ticker.
func (c *Clock) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(c.period)
	defer t.Stop()
	ticks, probeEvery := 0, int(c.idleAfter/c.period)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c.now.Store(Exact())
		if ticks++; ticks < probeEvery {
			continue
		}
		ticks = 0
		if c.state.CompareAndSwap(running, probing) {
			continue // ask; a reader answers by storing running
		}
		if !c.state.CompareAndSwap(probing, parked) {
			continue // a reader answered (or a waker runs)
		}
		// Nobody read the clock for idleAfter: park until a reader wakes us.
		// A token left by a reader of an earlier run finds the state still
		// parked: wait again.
		t.Stop()
		for c.state.Load() == parked {
			select {
			case <-stop:
				return
			case <-c.wake:
			}
		}
		c.now.Store(Exact())
		t.Reset(c.period)
	}
}
