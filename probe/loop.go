package probe

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/deadcheck"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
)

// The serving loop is the probe's one goroutine that waits for the world
// outside: it waits in ppoll(2), on a thread of its own, for a connection
// to its control socket or the next thing due, and never in the runtime's
// network poller or on a timer. Between waits it dispatches connections,
// ticks the look at the drop-in mutexes' waiters (watchMutexes) and the
// keeper of the lock-order edges (keepOrders), which wait on channels,
// and, in a probe started outside lockwatch run, looks whether anything
// but another goroutine of the program could wake one of its goroutines
// (lookBlocked). So while no request is being served, the probe adds
// nothing that Go's runtime counts as able to wake the program but this
// one thread in a system call; when the looks agree that nothing else
// could, the probe stands down (standdown.go), and the runtime judges the
// program as it would without lockwatch: a deadlocked one it ends at once,
// with its own message; a live one goes on, and the probe serves again
// after its next garbage collection.

// Each time the loop leaves its system call, the runtime's monitor
// (sysmon) wakes and polls every 20 µs for some 10 ms: about a millisecond
// of CPU on a small machine. So the loop wakes as seldom as it can:
//
//   - it looks at an awake program after awakeEvery, doubling after each
//     look that found it awake up to idleEvery, and after a look that found
//     it asleep within confirmEvery; each interval is drawn at random
//     around its mean (jitter; at most idleEvery), so that no periodic
//     sleeper of the program keeps in step with the looks;
//   - it looks for new lock-order edges (inproc.EdgeCount, an atomic
//     load) at each wake, at least every idleEvery, and after finding
//     some, wakes again within saveOrdersAfter while they keep coming;
//   - it ticks the look at the drop-in mutexes' waiters every mutexEvery.
const (
	awakeEvery   = 250 * time.Millisecond
	idleEvery    = time.Second
	confirmEvery = 300 * time.Millisecond
)

// A stand-down needs agreeLooks looks in a row that found the program
// asleep and the same, the first and the last at least agreeSpan apart.
// One look is a snapshot taken by a goroutine that holds a processor: a
// timer of that processor that falls due while it reads has no thread
// waiting for it (deadcheck's doc), so one look proves nothing; looks at
// random times that all agree, over a second, are what a deadlocked
// program gives and a live one does not (measured: docs/benchmarks.md).
// A stand-down of a live program is harmless all the same: the probe
// comes back after the next garbage collection, and meanwhile `lockwatch
// attach PID` reads the program from its memory.
const (
	agreeLooks = 3
	agreeSpan  = time.Second
)

// lookSettle is how long the loop waits in its system call, at least,
// right before a look. The runtime hands the processor of a goroutine in a
// system call to another thread within 20 ms: a timer in that processor's
// heap is then waited for by a thread in the network poller, which
// deadcheck sees. Before that, while the loop holds the processor, no
// thread waits for it. And the loop must get its processor back at once
// when it wakes (deadcheck.SelfRuns counts one run of its thread over the
// wait): else a goroutine of the program ran on that processor meanwhile,
// and may have left a timer in its heap, which nobody waits for while the
// loop looks.
const lookSettle = 50 * time.Millisecond

// settleMin is how long a wait before a look must have lasted: lookSettle,
// less the time the loop takes from deciding to wait to waiting.
const settleMin = lookSettle - 5*time.Millisecond

// maxLate is how late the loop may wake, at most, for a look to follow
// (measured: 0.1 to 0.7 ms on a machine loaded 2 to 3 times its cores).
const maxLate = 2 * time.Millisecond

// acceptBackoffMax bounds the pause after a failed accept (out of file
// descriptors or the like), doubling from 5 ms as net/http does.
const acceptBackoffMax = time.Second

// jitter returns a duration drawn uniformly from [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// loop serves ln until stop is closed (Close, or the agent stands down),
// then closes it. It reports whether it stood the agent down itself.
func (a *Agent) loop(ln *listener, stop chan struct{}, mutexTick, ordersTick chan<- struct{}) (down bool) {
	// On a thread of its own, which deadcheck leaves out: the times the
	// other threads were scheduled (Look.Runs) are then the program's
	// and the runtime's, not the loop's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		if err := ln.close(); err != nil {
			fmt.Fprintf(a.stderr, "lockwatch: pid %d: closing the control socket: %v\n", a.self.PID, err)
		}
	}()
	looks := a.selfCheck
	if looks {
		check := deadcheck.Readable
		if f := readable.Load(); f != nil {
			check = *f
		}
		if err := check(); err != nil {
			a.blind.Do(func() { fmt.Fprintf(a.stderr, blindLooks, a.self.PID, err) })
			looks = false
		}
	}
	slots := make(chan struct{}, probewire.MaxConns)
	every := mutexEvery(a.mutexAfter)
	now := time.Now()
	lookEvery := awakeEvery
	nextMutex, nextLook := now.Add(every), now.Add(jitter(lookEvery))
	var nextOrders time.Time // none pending
	edges, dropped := inproc.EdgeCount()
	var backoff time.Duration
	var acceptAt time.Time // no accept before (after a failed one)
	var b blockedLooks
	for {
		// The look at the waiters may come a quarter period late, with
		// the next look at the program, rather than wake the loop alone;
		// while looks agree that the program is asleep, up to
		// tickDeferMax late.
		mutexDue := nextMutex
		if b.n > 0 {
			mutexDue = nextMutex.Add(tickDeferMax)
		}
		next := earliest(mutexDue, nextLook)
		if !nextLook.After(mutexDue.Add(every / 4)) {
			next = nextLook
		}
		for _, t := range []time.Time{nextOrders, acceptAt} {
			if !t.IsZero() {
				next = earliest(next, t)
			}
		}
		waitFrom := time.Now()
		// Before a look, how often the loop's thread runs over the wait.
		var runs0, runs1 uint64
		runsOK := looks && !nextLook.After(next)
		if runsOK {
			runs0, runsOK = deadcheck.SelfRuns()
		}
		ready, err := ln.wait(max(next.Sub(waitFrom), 0), acceptAt.IsZero())
		b.waits++
		if runsOK {
			runs1, runsOK = deadcheck.SelfRuns()
		}
		select {
		case <-stop:
			return false
		default:
		}
		if err != nil {
			// Never seen; a loop that cannot wait would spin.
			fmt.Fprintf(a.stderr, "lockwatch: pid %d: the probe stops serving its control socket: %v\n", a.self.PID, err)
			a.mu.Lock()
			if a.stop == stop {
				_ = a.quiet()
			}
			a.mu.Unlock()
			return false
		}
		now = time.Now()
		// A look follows a wait of lookSettle (short: not yet), in which
		// the loop's thread ran once (it slept once, and got its
		// processor back at once) and after which it woke on time (within
		// maxLate: a thread that wakes late on a loaded machine tells
		// that another may have too, one that waits for a timer of the
		// program, which then finds the processor taken). A wait that
		// does not settle so is no look: it neither counts towards a
		// stand-down nor ends the looks that agree so far (on a loaded
		// machine most waits are late, in a deadlocked program too), and
		// the awake looks' back-off goes on.
		short := now.Sub(waitFrom) < settleMin
		settled := runsOK && runs1-runs0 == 1 && now.Sub(next) < maxLate
		if !acceptAt.IsZero() && !now.Before(acceptAt) {
			acceptAt, ready = time.Time{}, true
		}
		for ready {
			c, err := ln.accept()
			if err != nil {
				backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
				acceptAt = now.Add(backoff)
				break
			}
			backoff = 0
			if c == nil {
				break
			}
			short = true // the look would come after the work of a request
			if !a.dispatch(c, slots) {
				return false
			}
		}
		// The look comes before the ticks, which wake goroutines.
		if !now.Before(nextLook) {
			switch {
			case !looks:
				nextLook = now.Add(idleEvery) // a wake for the lock-order edges
			case short:
				nextLook = now.Add(lookSettle) // look after a wait that settles
			default:
				if settled && a.lookBlocked(&b, now) {
					return a.standDownBlocked(stop)
				}
				if b.n > 0 {
					lookEvery = awakeEvery
					nextLook = now.Add(jitter(confirmEvery))
				} else {
					nextLook = now.Add(min(jitter(lookEvery), idleEvery))
					lookEvery = min(2*lookEvery, idleEvery)
				}
			}
		}
		// Due a quarter period early (or late, above), the look at the
		// waiters shares a wake with the look at the program.
		if !now.Before(nextMutex.Add(-every/4)) && (b.n == 0 || !now.Before(mutexDue)) {
			nextMutex = now.Add(every)
			tick(mutexTick)
		}
		if n, d := inproc.EdgeCount(); n != edges || d != dropped {
			// A burst of edges is written once, saveOrdersAfter after
			// its first.
			edges, dropped = n, d
			if nextOrders.IsZero() {
				nextOrders = now.Add(saveOrdersAfter)
			}
		}
		if !nextOrders.IsZero() && !now.Before(nextOrders) {
			tick(ordersTick)
			nextOrders = time.Time{}
			// More may come: wake again soon while they do.
			nextLook = earliest(nextLook, now.Add(saveOrdersAfter))
		}
	}
}

// tickDeferMax is how late the look at the drop-in waiters may come while
// the loop's looks agree that the program is asleep. Its
// tick wakes a goroutine, which a thread runs: a look after it would see
// the program's threads run, and, with a short Registry.StuckAfter (ticks
// every 50 to 100 ms), no two looks would ever agree. Looks that agree
// stand the probe down within agreeSpan and a confirmEvery and a half, or
// stop agreeing before: the waiters are looked at then, or tickDeferMax
// late at most.
const tickDeferMax = 2 * time.Second

// readable, when set, stands in for deadcheck.Readable (tests: a process
// whose /proc files the probe cannot read).
var readable atomic.Pointer[func() error]

// blindLooks is what the probe says, once, when it cannot look whether
// the program is deadlocked: the runtime then never ends it for one while
// the probe serves.
const blindLooks = "lockwatch: pid %d: the probe cannot tell when every goroutine is blocked (%v), so while it serves Go's runtime will not end this program for a deadlock; run it under lockwatch run to keep that\n"

// earliest returns the earliest of ts.
func earliest(ts ...time.Time) time.Time {
	e := ts[0]
	for _, t := range ts[1:] {
		if t.Before(e) {
			e = t
		}
	}
	return e
}

// tick wakes the goroutine that waits on c, unless it has a tick pending.
func tick(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// dispatch serves the connection c in a goroutine of its own, at most
// probewire.MaxConns at once; false once the agent is closed.
func (a *Agent) dispatch(c *os.File, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
	default:
		_ = c.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
		_ = writeAnswer(c, &answer{Error: fmt.Sprintf("probe busy: %d requests in progress; try again", probewire.MaxConns)}, nil)
		_ = c.Close()
		return true
	}
	if !a.track(c) {
		<-slots
		_ = c.Close()
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.handle(c)
		// The slot is free before the client sees the hang-up, so
		// that a client that waits for it can count on the slot.
		<-slots
		a.untrack(c)
	}()
	return true
}

// blockedLooks is what the loop keeps of its looks: how many in a row
// found the program asleep and the same, the last of them, and when the
// first of them was taken.
type blockedLooks struct {
	n     int
	last  deadcheck.Look
	since time.Time
	// waits counts the loop's waits since the last look: each may wake
	// a thread of the runtime's (waitRuns).
	waits int
}

// maxRuns is how many times the program's threads may have been scheduled
// between two looks that agree it is asleep: the runtime wakes one or two
// of its own each time the loop waits, and more now and then (between
// looks at deadlocked programs: 1 to 7, mostly 1). A timer that fires more often
// between two looks is told apart; one that fires less often is caught
// asleep in every look only by chance, which the random intervals and
// agreeLooks make negligible.
const maxRuns = 4

// waitRuns is how many more times the program's threads may have been
// scheduled between two looks for each more wait of the loop between them
// (a wake for the lock-order edges, for the look at the drop-in waiters,
// or one that did not settle): the runtime may take the processor of the
// loop in its system call and wake a thread for it each time, which the
// loop's own waits cause, not the program. Counted against the looks, a
// loaded machine's late wakes kept a deadlocked program alive for a
// minute.
const waitRuns = 2

// gcOff is why the loop does not look while garbage collection is off.
const gcOff = "garbage collection is off (GOGC=off): a probe that stood down would not come back"

// lookBlocked looks whether the program is deadlocked (deadcheck), unless
// a request is being served (its connection waits in the runtime's poller,
// with deadlines) or garbage collection is off (a probe that stood down
// would never come back). It reports true when agreeLooks looks in a row,
// agreeSpan apart at least, found it asleep and the same.
func (a *Agent) lookBlocked(b *blockedLooks, now time.Time) bool {
	a.mu.Lock()
	busy := len(a.conns) > 0
	a.mu.Unlock()
	if busy {
		*b = blockedLooks{}
		return false
	}
	if deadcheck.GCOff() {
		*b = blockedLooks{}
		deadcheck.Tell(deadcheck.Look{Why: gcOff})
		return false
	}
	l := deadcheck.Take()
	last, waits := b.last, b.waits
	b.last, b.waits = l, 0
	switch {
	case !l.Asleep:
		b.n = 0
		return false
	case b.n == 0 || last.Sig != l.Sig || l.Runs-last.Runs > uint64(maxRuns+waitRuns*max(waits-1, 0)):
		b.n, b.since = 1, now
		return false
	}
	b.n++
	return b.n >= agreeLooks && now.Sub(b.since) >= agreeSpan
}
