package probe

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/stackdump"
)

// maxMutexes caps the mutexes of one answer (held or awaited ones only);
// MutexView.Truncated counts the rest.
const maxMutexes = 10000

// MutexView is what a probe says of the in-process drop-in mutexes of its
// process (github.com/lockwatch/lockwatch/sync): each one held or awaited,
// with its holder, readers and waiters.
type MutexView struct {
	PID   int       `json:"pid"`
	Start uint64    `json:"start"`
	Taken time.Time `json:"taken"`
	// Live counts the drop-in mutexes of the process (locked at least
	// once, not collected); Mutexes lists those held or awaited, at most
	// maxMutexes (Truncated counts the rest).
	Live      int     `json:"live"`
	Mutexes   []Mutex `json:"mutexes"`
	Truncated int     `json:"truncated,omitempty"`
	// MoreWaiters counts goroutines that wait for a drop-in mutex but
	// found no room in the waiter table: not listed.
	MoreWaiters int64 `json:"more_waiters,omitempty"`
}

// Mutex is one drop-in Mutex or RWMutex.
type Mutex struct {
	ID   uint64 `json:"id"`   // unique in the process, never reused
	Kind string `json:"kind"` // "mutex" or "rwmutex"
	// Name is the name given with sync.SetName, else where the mutex was
	// first locked ("pkg.Func file.go:12"); Named says which.
	Name  string          `json:"name"`
	Named bool            `json:"named,omitempty"`
	First stackdump.Frame `json:"first"` // where it was first locked
	// Holder holds it for writing (a Mutex: holds it).
	Holder *MutexHolder `json:"holder,omitempty"`
	// Readers hold an RWMutex for reading; MoreReaders more do, unlisted.
	Readers     []MutexHolder `json:"readers,omitempty"`
	MoreReaders int           `json:"more_readers,omitempty"`
	// Waiters, longest first.
	Waiters []MutexWaiter `json:"waiters,omitempty"`
}

// MutexHolder is a holder or a reader.
type MutexHolder struct {
	Goroutine int64           `json:"goroutine"`
	Site      stackdump.Frame `json:"site"` // where it called Lock or RLock
	// Stack is the stack it acquired from, when it had to wait first
	// (a writer); else nil. Its current stack is in a goroutine dump.
	Stack []stackdump.Frame `json:"stack,omitempty"`
	// Since is when it acquired, when it had to wait first; else, with
	// SinceSeen, when a goroutine that waits for the mutex first found it
	// held (it has held at least since then); else zero (an acquire that
	// did not wait reads no clock) and left out.
	Since     time.Time `json:"since,omitzero"`
	SinceSeen bool      `json:"since_seen,omitempty"`
}

// MutexWaiter is a goroutine blocked in Lock (Write) or RLock.
type MutexWaiter struct {
	Goroutine int64             `json:"goroutine"`
	Write     bool              `json:"write"`
	Stack     []stackdump.Frame `json:"stack"`
	Since     time.Time         `json:"since"`
}

// Mutexes asks for the process's drop-in mutexes that are held or awaited.
func (c *Client) Mutexes(ctx context.Context) (*MutexView, error) {
	ans, _, err := c.do(ctx, request{Op: opMutexes})
	if err != nil {
		return nil, err
	}
	if ans.Mutexes == nil {
		return nil, &AnswerError{Op: opMutexes, Message: "answer without mutexes"}
	}
	return ans.Mutexes, nil
}

// MutexesAndOrders asks, in one request, for the process's drop-in
// mutexes that are held or awaited and for their lock-order edges (what
// Mutexes and Orders answer). The edges are nil if the probe answered the
// mutexes alone (it predates the combined request, or both would not fit
// in one answer): ask Orders for them.
func (c *Client) MutexesAndOrders(ctx context.Context) (*MutexView, *OrderView, error) {
	ans, _, err := c.do(ctx, request{Op: opMutexes, Orders: true})
	if err != nil {
		return nil, nil, err
	}
	if ans.Mutexes == nil {
		return nil, nil, &AnswerError{Op: opMutexes, Message: "answer without mutexes"}
	}
	return ans.Mutexes, ans.Orders, nil
}

// NoMutexesFile returns the name, in the run directory, of the file that
// said a process had no drop-in mutex, so that lockwatch need not ask it.
// The drop-in no longer registers its mutexes, so a probe cannot know it
// and makes no such file; lockwatch still honours one that an older probe
// made.
func NoMutexesFile(base string) string { return filepath.Base(base) + ".no-mutexes" }

// mutexes reads the table of drop-in mutexes of this process.
func (a *Agent) mutexes() *MutexView {
	s := inproc.Take(maxMutexes)
	mono, now := record.Nanotime(), time.Now()
	return ViewOf(s, a.self.PID, a.self.Start, func(t int64) time.Time { return record.Wall(t, mono, now) }, stackdump.FramesOf)
}

// ViewOf is the MutexView of a snapshot of the drop-in records of process
// pid (start): wall places a record's time (Nanotime's scale), frames
// symbolizes its PCs (stackdump.FramesOf in the process itself, the
// process's binary from outside).
func ViewOf(s inproc.Snapshot, pid int, start uint64, wall func(int64) time.Time, frames func([]uintptr) []stackdump.Frame) *MutexView {
	v := &MutexView{PID: pid, Start: start, Taken: s.Taken, Live: s.Live,
		Mutexes: make([]Mutex, 0, len(s.Locks)), Truncated: s.Truncated, MoreWaiters: s.MoreWaiters}
	for _, l := range s.Locks {
		v.Mutexes = append(v.Mutexes, mutexOf(l, wall, frames))
	}
	return v
}

// mutexOf converts a table record, symbolizing its PCs.
func mutexOf(l inproc.Lock, wall func(int64) time.Time, frames func([]uintptr) []stackdump.Frame) Mutex {
	known := func(t int64) time.Time {
		if t == 0 {
			return time.Time{}
		}
		return wall(t)
	}
	m := Mutex{ID: l.ID, Kind: l.Kind.String(), Name: l.Name, Named: l.Name != "", First: siteOf(frames, l.First, l.First2),
		MoreReaders: l.MoreReaders}
	if !m.Named {
		m.Name = siteName(m.First)
	}
	if l.Holder.Goroutine != 0 {
		m.Holder = &MutexHolder{Goroutine: l.Holder.Goroutine, Site: siteOf(frames, l.Holder.PC, l.Holder.PC2),
			Stack: cleanStack(frames(l.HolderStack)), Since: known(l.Holder.Since), SinceSeen: l.HolderSeen}
	}
	for _, r := range l.Readers {
		m.Readers = append(m.Readers, MutexHolder{Goroutine: r.Goroutine, Site: siteOf(frames, r.PC, r.PC2), Since: known(r.Since)})
	}
	for _, w := range l.Waiters {
		m.Waiters = append(m.Waiters, MutexWaiter{Goroutine: w.Goroutine, Write: w.Write,
			Stack: cleanStack(frames(w.Stack)), Since: wall(w.Since)})
	}
	return m
}

// frameOf symbolizes the return address pc as a stack would.
func frameOf(frames func([]uintptr) []stackdump.Frame, pc uintptr) stackdump.Frame {
	if pc == 0 {
		return stackdump.Frame{}
	}
	if fs := frames([]uintptr{pc}); len(fs) > 0 {
		return fs[len(fs)-1] // the outermost of any inlined calls: the caller of Lock
	}
	return stackdump.Frame{}
}

// siteOf is the site of a Lock call from the return addresses of Lock (pc)
// and of its caller (pc2): pc's frame, unless that is a wrapper the
// compiler generated (a method value, a promoted method called through an
// interface) or the standard library's sync (a Cond's Wait locks for its
// caller): then pc2's.
func siteOf(frames func([]uintptr) []stackdump.Frame, pc, pc2 uintptr) stackdump.Frame {
	f := frameOf(frames, pc)
	if pc2 != 0 && (f.File == "<autogenerated>" || strings.HasPrefix(f.Func, "sync.")) {
		if f2 := frameOf(frames, pc2); f2.Func != "" {
			return f2
		}
	}
	return f
}

// siteName is a mutex's display name from the site of its first Lock:
// "pkg.Func file.go:12".
func siteName(f stackdump.Frame) string {
	if f.Func == "" {
		return "(unnamed mutex)"
	}
	file := f.File
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		file = file[i+1:]
	}
	return fmt.Sprintf("%s %s:%d", f.Func, file, f.Line)
}

// cleanStack drops the compiler's go-statement wrappers, which the
// frame-pointer walk sees and runtime.Callers elides, and runtime.goexit.
func cleanStack(fs []stackdump.Frame) []stackdump.Frame {
	out := fs[:0]
	for _, f := range fs {
		if !strings.Contains(f.Func, ".gowrap") && f.Func != "runtime.goexit" {
			out = append(out, f)
		}
	}
	return out
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

// watchMutexes runs until Close.
func (a *Agent) watchMutexes(after time.Duration) {
	defer a.wg.Done()
	every := max(min(after/4, mutexCheckEvery), time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	reported := map[[2]uint32]bool{} // slot, seq: one wait
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		a.mutexLooks.Add(1)
		now := record.Nanotime()
		seen := map[[2]uint32]bool{}
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
	mode := "to lock"
	if !w.Write {
		mode = "to read-lock"
	}
	name, held := "(a mutex since collected)", "held by no recorded goroutine (it may just have changed hands)"
	if l, ok := inproc.Describe(w.Lock); ok {
		mono, now := record.Nanotime(), time.Now()
		m := mutexOf(l, func(t int64) time.Time { return record.Wall(t, mono, now) }, stackdump.FramesOf)
		name = m.Name
		switch {
		case m.Holder != nil:
			held = fmt.Sprintf("held by goroutine %d, locked at %s", m.Holder.Goroutine, siteName(m.Holder.Site))
			if !m.Holder.Since.IsZero() {
				at := "for"
				if m.Holder.SinceSeen {
					at = "for at least"
				}
				held = fmt.Sprintf("held by goroutine %d %s %v, locked at %s", m.Holder.Goroutine, at,
					now.Sub(m.Holder.Since).Round(time.Millisecond), siteName(m.Holder.Site))
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
	fmt.Fprintf(a.stderr, "lockwatch: pid %d goroutine %d has waited %v %s drop-in mutex %q, %s; %s\n",
		a.self.PID, w.Goroutine, waited.Round(time.Millisecond), mode, name, held, where)
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
