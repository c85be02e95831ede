package probe

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/deadcheck"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// The serving loop is the probe's one goroutine that waits for the world
// outside: it waits in ppoll(2), on a thread of its own, for a connection
// to its control socket or the next thing due, and never in the runtime's
// network poller or on a timer. Between waits it dispatches connections,
// ticks the look at the drop-in mutexes' waiters (watchMutexes) and the
// keeper of the lock-order edges (keepOrders), which wait on channels,
// and looks whether the program is deadlocked (lookBlocked). So while no
// request is being served, the probe adds nothing that Go's runtime counts
// as able to wake the program but this one thread in a system call; when
// the loop finds the program's goroutines all blocked, it stands the probe
// down (standdown.go), and the runtime ends the program as it would
// without lockwatch.

// Each time the loop leaves its system call, the runtime's monitor
// (sysmon) wakes and polls every 20 µs for some 10 ms: about a millisecond
// of CPU on a small machine. So the loop wakes as seldom as it can:
//
//   - it looks whether the program is deadlocked blockedEvery after a look
//     that found it asleep (two looks in a row must agree), and backs off
//     after each look that found it awake, doubling up to idleEvery;
//   - it looks for new lock-order edges (inproc.EdgeCount, an atomic
//     load) at each wake, and after finding some, wakes again within
//     saveOrdersAfter while they keep coming;
//   - it ticks the look at the drop-in mutexes' waiters every mutexEvery.
const (
	blockedEvery = 250 * time.Millisecond
	idleEvery    = time.Second
)

// lookSettle is how long the loop waits in its system call, at least,
// right before a look. The runtime hands the processor of a goroutine in a
// system call to another thread after 10 ms: a timer in that processor's
// heap is then waited for by a thread in the network poller, which
// deadcheck sees. Before that, while the loop holds the processor, no
// thread waits for it.
const lookSettle = 50 * time.Millisecond

// runGrace is how long the looks must agree in a process that joined its
// run from the environment, as lockwatch run starts it: run's supervisor
// reads such a process from outside within some 3 s, prints lockwatch's
// report and asks the probe to stand down; the probe stands down by
// itself only if it has not.
const runGrace = 5 * time.Second

// acceptBackoffMax bounds the pause after a failed accept (out of file
// descriptors or the like), doubling from 5 ms as net/http does.
const acceptBackoffMax = time.Second

// loop serves ln until stop is closed (Close, or the agent stands down),
// then closes it.
func (a *Agent) loop(ln *listener, stop chan struct{}, mutexTick, ordersTick chan<- struct{}) {
	defer a.wg.Done()
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
	slots := make(chan struct{}, probewire.MaxConns)
	every := mutexEvery(a.mutexAfter)
	now := time.Now()
	lookEvery := blockedEvery
	nextMutex, nextLook := now.Add(every), now.Add(lookEvery)
	var nextOrders time.Time // none pending
	edges, dropped := inproc.EdgeCount()
	var backoff time.Duration
	var acceptAt time.Time // no accept before (after a failed one)
	var b blockedLooks
	for {
		next := earliest(nextMutex, nextLook)
		for _, t := range []time.Time{nextOrders, acceptAt} {
			if !t.IsZero() {
				next = earliest(next, t)
			}
		}
		waitFrom := time.Now()
		ready, err := ln.wait(max(next.Sub(waitFrom), 0), acceptAt.IsZero())
		select {
		case <-stop:
			return
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
			return
		}
		now = time.Now()
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
			if !a.dispatch(c, slots) {
				return
			}
		}
		// The look comes before the ticks, which wake goroutines, and
		// after lookSettle in the system call at least (see lookSettle).
		if !now.Before(nextLook) && now.Sub(waitFrom) < lookSettle {
			nextLook = now.Add(lookSettle)
		} else if !now.Before(nextLook) {
			if a.lookBlocked(&b, now) {
				a.standDownBlocked(stop)
				return
			}
			if b.last.Asleep {
				lookEvery = blockedEvery
			} else {
				lookEvery = min(2*lookEvery, idleEvery)
			}
			nextLook = now.Add(lookEvery)
		}
		// Due a quarter period early, the look at the waiters shares a
		// wake with the look at the program once they fall in step.
		if !now.Before(nextMutex.Add(-every / 4)) {
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

// blockedLooks is what the loop keeps of its looks: the last one, and
// since when the looks have found the program asleep and the same.
type blockedLooks struct {
	last  deadcheck.Look
	since time.Time
}

// maxRuns is how many times the program's threads may have been scheduled
// between two looks that agree it is asleep: the runtime wakes one or two
// of its own each time the loop waits (deadcheck.Look.Runs: 1 to 3 between
// two looks at a deadlocked program, measured). A timer in the heap of the
// processor the loop holds, which no thread waits for meanwhile, can make
// a look see the program asleep if it falls due while the look reads, or
// if it fired just as the loop woke (then the loop got its processor from
// the run queue: common with GOMAXPROCS=1 and a ticker of 10 ms); firing
// more than maxRuns times between two looks, it is told apart; firing
// less often, it is caught so twice in a row only by chance (each look
// reads for some 100 µs).
const maxRuns = 4

// lookBlocked looks whether the program is deadlocked (deadcheck), unless
// a request is being served (its connection waits in the runtime's poller,
// with deadlines). It reports true when the looks have found it asleep and
// the same for a.blockedAfter (two looks in a row at least).
func (a *Agent) lookBlocked(b *blockedLooks, now time.Time) bool {
	a.mu.Lock()
	busy := len(a.conns) > 0
	a.mu.Unlock()
	if busy {
		*b = blockedLooks{}
		return false
	}
	l := deadcheck.Take()
	last := b.last
	b.last = l
	switch {
	case !l.Asleep:
		return false
	case !last.Asleep || last.Sig != l.Sig || l.Runs-last.Runs > maxRuns:
		b.since = now
		return false
	}
	return now.Sub(b.since) >= a.blockedAfter
}

// blockedReport is what the probe says on stderr when it found the
// program deadlocked: a line, and one per goroutine waiting for a drop-in
// mutex (the runtime then prints every goroutine's stack).
func (a *Agent) blockedReport() string {
	now := record.Nanotime()
	ws := inproc.Stuck(now + 1)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Goroutine < ws[j].Goroutine })
	var b strings.Builder
	fmt.Fprintf(&b, "lockwatch: pid %d: every goroutine is blocked, and only another goroutine of the program could wake one: a deadlock; the probe stands down, so that Go's runtime ends the program as it would without lockwatch\n", a.self.PID)
	for _, w := range ws {
		fmt.Fprintf(&b, "lockwatch: pid %d %s\n", a.self.PID, waitText(w, time.Duration(now-w.Since)))
	}
	if len(ws) == 0 {
		fmt.Fprintf(&b, "lockwatch: pid %d: no goroutine waits for a drop-in mutex (github.com/lockwatch/lockwatch/sync); the runtime's stacks below show what each one waits for\n", a.self.PID)
	}
	return b.String()
}
