package probe

import (
	"fmt"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/lockreg"
)

// mutexes reads the table of drop-in mutexes of this process.
func (a *Agent) mutexes() *mutexView {
	s := inproc.Take(probewire.MaxMutexes)
	mono, now := record.Nanotime(), time.Now()
	return probewire.ViewOf(s, a.self.PID, a.self.Start, func(t int64) time.Time { return record.Wall(t, mono, now) }, record.FramesOf, sameFrame)
}

// The stuck hook of the drop-in mutexes. A goroutine blocked in sync's Lock
// cannot time itself as a lockreg waiter does, so the agent looks: every
// mutexCheckEvery (at most) it reads the waiter table (2048 records, a few
// microseconds) and reports each wait that has lasted StuckAfter, once: a
// line on Stderr and a dump pair, as lockreg's hook does. It never ends
// the process.

// mutexCheckEvery is the longest time between two looks at the waiter
// table; a shorter StuckAfter looks four times per StuckAfter.
const mutexCheckEvery = time.Second

// mutexStuckAfter is the threshold of the drop-in mutexes' hook: the
// registry's StuckAfter, whose default is lockreg's (10 s).
func mutexStuckAfter(o lockreg.Options) time.Duration {
	if o.StuckAfter > 0 {
		return o.StuckAfter
	}
	return 10 * time.Second
}

// mutexEvery is how often watchMutexes looks, for the threshold after.
func mutexEvery(after time.Duration) time.Duration {
	return max(min(after/4, mutexCheckEvery), time.Millisecond)
}

// watchMutexes looks at each tick (from the loop, every mutexEvery) until
// stop is closed (Close, or the agent stands down).
func (a *Agent) watchMutexes(after time.Duration, stop <-chan struct{}, tick <-chan struct{}) {
	defer a.wg.Done()
	reported := map[[2]uint32]bool{} // slot, seq: one wait
	seen := map[[2]uint32]bool{}     // this look's, kept from one to the next
	for {
		select {
		case <-stop:
			return
		case <-tick:
		}
		a.mutexLooks.Add(1)
		now := record.Nanotime()
		clear(seen)
		for _, w := range inproc.Stuck(now - int64(after)) {
			key := [2]uint32{w.Slot, w.Seq}
			seen[key] = true
			if !reported[key] {
				reported[key] = true
				a.onStuckMutex(w, time.Duration(now-w.Since))
			}
		}
		for k := range reported {
			if !seen[k] {
				delete(reported, k)
			}
		}
	}
}

// onStuckMutex writes the line and the dump pair for one stuck wait.
func (a *Agent) onStuckMutex(w inproc.StuckWaiter, waited time.Duration) {
	where := "no dump: the probe is closed"
	if !a.isClosed() {
		paths, age, err := a.dump.stuckPair(a.base, time.Now())
		switch {
		case err != nil:
			where = fmt.Sprintf("no dump: %v", err)
		case age > 0:
			where = fmt.Sprintf("dump (%v ago): %s and %s", age.Round(time.Millisecond), paths[0], paths[1])
		default:
			where = fmt.Sprintf("dump: %s and %s", paths[0], paths[1])
		}
	}
	fmt.Fprintf(a.stderr, "lockwatch: pid %d %s; %s\n", a.self.PID, waitText(w, waited), where)
}

// waitText describes a wait: "goroutine 7 has waited 10s to lock drop-in
// mutex "queue", held by goroutine 5 for 12s, locked at main.go:40".
func waitText(w inproc.StuckWaiter, waited time.Duration) string {
	mode := "to lock"
	if !w.Write {
		mode = "to read-lock"
	}
	name, held := "(a mutex since collected)", "held by no recorded goroutine (it may just have changed hands)"
	if l, ok := inproc.Describe(w.Lock); ok {
		mono, now := record.Nanotime(), time.Now()
		m := probewire.MutexOf(l, func(t int64) time.Time { return record.Wall(t, mono, now) }, record.FramesOf, sameFrame)
		name = m.Name
		switch {
		case m.Holder != nil:
			held = fmt.Sprintf("held by goroutine %d, locked at %s", m.Holder.Goroutine, probewire.SiteName(m.Holder.Site))
			if !m.Holder.Since.IsZero() {
				at := "for"
				if m.Holder.SinceSeen {
					at = "for at least"
				}
				held = fmt.Sprintf("held by goroutine %d %s %v, locked at %s", m.Holder.Goroutine, at,
					now.Sub(m.Holder.Since).Round(time.Millisecond), probewire.SiteName(m.Holder.Site))
			}
			if m.Holder.Goroutine == w.Goroutine {
				held += " (by the waiting goroutine itself: a self-deadlock)"
			}
		case len(l.Readers) > 0 || m.MoreReaders > 0:
			held = "read-locked by " + readersText(l.Readers, m.MoreReaders)
			for _, r := range l.Readers {
				if r.Goroutine == w.Goroutine && !w.Write {
					held += " (the waiting goroutine read-holds it itself, and a writer waits: a self-deadlock)"
				}
			}
		}
	}
	return fmt.Sprintf("goroutine %d has waited %v %s drop-in mutex %q, %s", w.Goroutine, waited.Round(time.Millisecond), mode, name, held)
}

// readersText is "goroutine 4", "goroutines 4, 9", "goroutines 4 and 2
// more".
func readersText(rs []inproc.Reader, more int) string {
	var b strings.Builder
	if len(rs)+more == 1 {
		b.WriteString("goroutine ")
	} else {
		b.WriteString("goroutines ")
	}
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", r.Goroutine)
	}
	if more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	return b.String()
}
