package report

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/lockreg"
)

// Options tune the diagnosis. The zero value gives the defaults.
type Options struct {
	// StuckAfter is how long a live holder may hold a lock while another
	// goroutine waits for it before it is reported stuck. Default 10s.
	StuckAfter time.Duration
	// Events is how many recent events are shown for each lock a finding
	// names. Default 10.
	Events int
	// ProbeTimeout is how long a probe is given to answer. Default 1s.
	ProbeTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10 * time.Second
	}
	if o.Events <= 0 {
		o.Events = 10
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	return o
}

// goroutine names a node of the wait-for graph.
type goroutine struct {
	id proc.Identity
	g  int64
}

// holding is who holds a lock, as the snapshot says.
type holding struct {
	id    proc.Identity
	g     int64
	since time.Time
	stack uint64
}

// graph is a snapshot seen as a wait-for graph, with the liveness of every
// process it names.
type graph struct {
	s      *lockreg.Snapshot
	status map[proc.Identity]proc.Status
	opts   Options

	waitsFor map[goroutine]int // goroutine -> index into s.Waiters
	byLock   map[int][]int     // lock index -> indexes into s.Waiters
	locks    map[int]int       // lock index -> index into s.Locks
}

func newGraph(s *lockreg.Snapshot, status map[proc.Identity]proc.Status, opts Options) *graph {
	g := &graph{s: s, status: status, opts: opts.withDefaults(),
		waitsFor: make(map[goroutine]int), byLock: make(map[int][]int), locks: make(map[int]int)}
	for i, l := range s.Locks {
		g.locks[l.Index] = i
	}
	for i, w := range s.Waiters {
		g.waitsFor[goroutine{w.Identity(), w.Goroutine}] = i
		g.byLock[w.Lock] = append(g.byLock[w.Lock], i)
	}
	return g
}

// identities returns every process identity the snapshot names, for the
// liveness checks.
func identities(s *lockreg.Snapshot) []proc.Identity {
	seen := make(map[proc.Identity]bool)
	var out []proc.Identity
	add := func(id proc.Identity) {
		if !id.IsZero() && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, p := range s.Processes {
		add(p.Identity())
	}
	for i := range s.Locks {
		if h, ok := holderOf(s, &s.Locks[i]); ok {
			add(h.id)
		}
	}
	for _, w := range s.Waiters {
		add(w.Identity())
	}
	return out
}

// holderOf returns the holder of a held lock: its record, or, while the
// record is being written, the pid in the word with the start time of the
// process table's entry for that pid.
func holderOf(s *lockreg.Snapshot, l *lockreg.Lock) (holding, bool) {
	if !l.Held() {
		return holding{}, false
	}
	if h := l.Holder; h != nil {
		return holding{id: h.Identity(), g: h.Goroutine, since: h.Since, stack: h.Stack}, true
	}
	if l.HolderPID == 0 {
		return holding{}, false // owner died, record unreadable: nobody to name
	}
	id := proc.Identity{PID: l.HolderPID}
	for _, p := range s.Processes {
		if p.PID == l.HolderPID && p.State == lockreg.ProcRunning {
			id.Start = p.Start
		}
	}
	return holding{id: id}, true
}

func (g *graph) statusOf(id proc.Identity) proc.Status { return g.status[id] }

// findings is the analysis: every finding the snapshot shows, most severe
// first. It is a pure function of the snapshot and the statuses.
func (g *graph) findings() []Finding {
	var out []Finding
	s := g.s
	deadHolder := make(map[goroutine]bool)
	for i := range s.Locks {
		l := &s.Locks[i]
		h, ok := holderOf(s, l)
		if !ok && !l.OwnerDied {
			continue
		}
		st := g.statusOf(h.id)
		if !l.OwnerDied && !st.Dead() {
			continue
		}
		deadHolder[goroutine{h.id, h.g}] = true
		f := Finding{Kind: DeadHolder, Lock: l.Name, OwnerDied: l.OwnerDied, Waiters: g.liveWaiters(l.Index)}
		if ok {
			p := g.party(h.id, h.g, h.since, h.stack)
			if l.OwnerDied && st == proc.Alive {
				// The kernel saw the holder's thread die; its pid may
				// have been reused since, or the check lags.
				p.Alive, p.State = false, "dead"
			}
			f.Holder = &p
		}
		who := "an unknown process"
		if f.Holder != nil {
			who = fmt.Sprintf("pid %d%s (%s)", h.id.PID, roleSuffix(f.Holder.Role), f.Holder.State)
		}
		robust := false
		if ok {
			if p, found := s.Process(h.id); found {
				robust = p.Robust
			}
		}
		f.Summary = fmt.Sprintf("%s holds %q%s; %s", who, l.Name, diedHow(l.OwnerDied, robust), waitersPhrase(len(f.Waiters)))
		if f.Holder != nil {
			f.Next = fmt.Sprintf("find why pid %d died holding %q (its acquire stack is below); waiters never get it under the Stall policy: kill the run, or use the Recover policy to repair and take it", h.id.PID, l.Name)
		} else {
			f.Next = fmt.Sprintf("no holder record names the dead holder of %q (recording off, or it died between taking the lock and recording it): the processes table lists the processes that died; kill the run, or use the Recover policy", l.Name)
		}
		f.key = fmt.Sprintf("%s|%s|%v|%d", f.Kind, l.Name, h.id, h.g)
		out = append(out, f)
	}
	out = append(out, g.cycles(deadHolder)...)
	for i := range s.Locks {
		if f, ok := g.stuck(&s.Locks[i]); ok {
			out = append(out, f)
		}
	}
	for _, w := range s.Waiters {
		st := g.statusOf(w.Identity())
		if !st.Dead() {
			continue
		}
		p := g.party(w.Identity(), w.Goroutine, w.Since, w.Stack)
		out = append(out, Finding{Kind: StaleWaiter, Lock: w.LockName, Waiters: []Party{p},
			Summary: fmt.Sprintf("pid %d%s (%s) is recorded waiting for %q", w.PID, roleSuffix(p.Role), p.State, w.LockName),
			Next:    "harmless to the lock itself, but the process died inside Lock; look for why it died (stacks below)",
			key:     fmt.Sprintf("%s|%d|%v|%d|%s", StaleWaiter, w.Slot, w.Identity(), w.Goroutine, w.LockName)})
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := a.Kind.rank() - b.Kind.rank(); c != 0 {
			return c
		}
		return strings.Compare(a.Lock, b.Lock)
	})
	return out
}

// cycles finds loops in the wait-for graph among goroutines not proven
// dead. Each goroutine waits for at most one lock, so the graph is a
// functional graph: a walk from each node, colouring as it goes, meets
// every loop once.
func (g *graph) cycles(deadHolder map[goroutine]bool) []Finding {
	next := func(n goroutine) (goroutine, int, bool) {
		wi, ok := g.waitsFor[n]
		if !ok {
			return goroutine{}, 0, false
		}
		w := g.s.Waiters[wi]
		li, ok := g.locks[w.Lock]
		if !ok {
			return goroutine{}, 0, false
		}
		h, ok := holderOf(g.s, &g.s.Locks[li])
		if !ok || h.g == 0 || g.s.Locks[li].OwnerDied || g.statusOf(h.id).Dead() || deadHolder[goroutine{h.id, h.g}] {
			return goroutine{}, 0, false
		}
		return goroutine{h.id, h.g}, wi, true
	}
	const (
		white = iota
		grey
		black
	)
	colour := make(map[goroutine]int)
	var out []Finding
	for _, w := range g.s.Waiters {
		start := goroutine{w.Identity(), w.Goroutine}
		if colour[start] != white {
			continue
		}
		var path []goroutine
		for n := start; ; {
			if colour[n] == grey { // back on this walk: a loop from n
				at := slices.Index(path, n)
				out = append(out, g.cycleFinding(path[at:]))
				break
			}
			if colour[n] == black {
				break
			}
			colour[n] = grey
			path = append(path, n)
			m, _, ok := next(n)
			if !ok {
				break
			}
			n = m
		}
		for _, n := range path {
			colour[n] = black
		}
	}
	return out
}

func (g *graph) cycleFinding(loop []goroutine) Finding {
	// Start the loop at its smallest lock name, so that the same loop
	// always reads the same way.
	steps := make([]Step, len(loop))
	locks := make([]int, len(loop)) // the lock index each step waits for
	for i, n := range loop {
		w := g.s.Waiters[g.waitsFor[n]]
		steps[i] = Step{Party: g.party(n.id, n.g, w.Since, w.Stack), WaitsFor: w.LockName}
		locks[i] = w.Lock
	}
	first := 0
	for i := range steps {
		if steps[i].WaitsFor < steps[first].WaitsFor {
			first = i
		}
	}
	steps = append(steps[first:], steps[:first]...)
	locks = append(locks[first:], locks[:first]...)
	// The holder of the first lock, with when and where it took it (its
	// holder record), not when and where it began to wait for the next.
	holder := steps[1%len(steps)].Party
	if li, ok := g.locks[locks[0]]; ok {
		if h, ok := holderOf(g.s, &g.s.Locks[li]); ok && h.id == (proc.Identity{PID: holder.PID, Start: holder.Start}) && h.g == holder.Goroutine {
			holder = g.party(h.id, h.g, h.since, h.stack)
		}
	}
	f := Finding{Kind: Cycle, Lock: steps[0].WaitsFor, Holder: &holder, Waiters: []Party{steps[0].Party}, Cycle: steps}
	var b strings.Builder
	keys := make([]string, len(steps))
	for i, st := range steps {
		fmt.Fprintf(&b, "pid %d g%d waits for %q -> ", st.PID, st.Goroutine, st.WaitsFor)
		keys[i] = fmt.Sprintf("%v/%d/%s", proc.Identity{PID: st.PID, Start: st.Start}, st.Goroutine, st.WaitsFor)
	}
	fmt.Fprintf(&b, "pid %d g%d", steps[0].PID, steps[0].Goroutine)
	if len(steps) == 1 {
		// A goroutine that locks a lock it holds: no order to fix.
		st := steps[0]
		f.Summary = fmt.Sprintf("pid %d%s goroutine %d waits for %q, which it holds itself: a lock is not reentrant", st.PID, roleSuffix(st.Role), st.Goroutine, st.WaitsFor)
		f.Next = fmt.Sprintf("do not lock %q again while holding it: unlock it first, or split the function that takes it (its acquire and its second Lock are in the stacks below); kill the process to free it", st.WaitsFor)
	} else {
		f.Summary = fmt.Sprintf("%d goroutines wait for each other: %s", len(steps), b.String())
		f.Next = "take these locks in one global order everywhere (their acquire sites are in the stacks below); kill one process of the loop to free the others"
	}
	f.key = string(Cycle) + "|" + strings.Join(keys, "|")
	return f
}

// stuck reports a lock held by a live goroutine that waits for no registry
// lock, for StuckAfter, while another goroutine has waited as long.
func (g *graph) stuck(l *lockreg.Lock) (Finding, bool) {
	h, ok := holderOf(g.s, l)
	if !ok || l.OwnerDied || g.statusOf(h.id) != proc.Alive || h.since.IsZero() {
		return Finding{}, false
	}
	if _, waiting := g.waitsFor[goroutine{h.id, h.g}]; waiting {
		return Finding{}, false // part of a chain or loop, not the end of one
	}
	held := g.s.Taken.Sub(h.since)
	if held < g.opts.StuckAfter {
		return Finding{}, false
	}
	waiters := g.liveWaiters(l.Index)
	var longest time.Duration
	for _, w := range waiters {
		longest = max(longest, time.Duration(w.For))
	}
	if longest < g.opts.StuckAfter {
		return Finding{}, false
	}
	p := g.party(h.id, h.g, h.since, h.stack)
	return Finding{Kind: StuckHolder, Lock: l.Name, Holder: &p, Waiters: waiters,
		Summary: fmt.Sprintf("pid %d%s g%d has held %q for %s while %s", h.id.PID, roleSuffix(p.Role), h.g, l.Name,
			held.Round(time.Millisecond), waitersPhrase(len(waiters))),
		Next: fmt.Sprintf("see what pid %d g%d is blocked on (its stacks are below: where it took the lock, and what it does now if its probe answered): a pipe, channel or join that needs a waiter to move first is a deadlock", h.id.PID, h.g),
		key:  fmt.Sprintf("%s|%s|%v|%d", StuckHolder, l.Name, h.id, h.g)}, true
}

// liveWaiters returns the waiters of a lock not proven dead, longest first.
func (g *graph) liveWaiters(lock int) []Party {
	out := []Party{}
	for _, wi := range g.byLock[lock] {
		w := g.s.Waiters[wi]
		if g.statusOf(w.Identity()).Dead() {
			continue
		}
		out = append(out, g.party(w.Identity(), w.Goroutine, w.Since, w.Stack))
	}
	return out
}

// party describes a goroutine of the run.
func (g *graph) party(id proc.Identity, gid int64, since time.Time, stack uint64) Party {
	st := g.statusOf(id)
	p := Party{PID: id.PID, Start: id.Start, Goroutine: gid, Alive: st == proc.Alive, State: st.String(), Since: since}
	if !since.IsZero() {
		p.For = Duration(max(g.s.Taken.Sub(since), 0))
	}
	if pr, ok := g.s.Process(id); ok && pr.Info != nil {
		p.Role = pr.Info.Role
	}
	if fs, ok := g.s.Stack(id, stack); ok {
		if f, ok := callSite(fs); ok {
			fj := frameOf(f)
			p.Where = &fj
		}
	}
	return p
}

func roleSuffix(role string) string {
	if role == "" {
		return ""
	}
	return " [" + role + "]"
}

// diedHow says who marked the lock word: the kernel, for a holder whose
// process registered the robust list; otherwise a waiter that proved the
// holder dead (pid gone, zombie or reused) and marked it as the kernel would.
func diedHow(ownerDied, robust bool) string {
	switch {
	case ownerDied && robust:
		return " (the kernel marked it OWNER_DIED)"
	case ownerDied:
		return " (a waiter proved its death and marked it OWNER_DIED)"
	}
	return ""
}

func waitersPhrase(n int) string {
	switch n {
	case 0:
		return "no goroutine waits for it"
	case 1:
		return "1 goroutine waits for it"
	}
	return fmt.Sprintf("%d goroutines wait for it", n)
}
