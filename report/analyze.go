package report

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
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
	// ProbeConcurrency is how many probes are asked at once. Default
	// DefaultProbeConcurrency.
	ProbeConcurrency int
	// LiveStacks bounds how many processes a report asks for live stacks:
	// those of the first findings, stuck holders' processes before
	// waiters' (see stacks.go). The others' stacks come from their records,
	// and a note says so. 0 means DefaultLiveStacks; AllLiveStacks asks
	// every process involved.
	LiveStacks int
	// First is the process asked first for live stacks (the one a user
	// named: lockwatch attach PID), before the findings' order; zero: none.
	First procid.ID
	// TextDumps asks the probes of stuck holders for text dumps, which stop
	// the process's world for the whole dump, instead of execution traces
	// (Stacks.Goroutines), which stop it for moments: the way reports were
	// made before traces, kept for comparison.
	TextDumps bool
}

// DefaultProbeConcurrency is how many probes a report asks at once by
// default: enough to keep a small machine's cores busy while others
// answer, few enough that lockwatch holds few answers at a time and that
// the probed processes do not all compete for the CPU at the same moment
// (a stop of the world lasts as long as its slowest thread takes to stop).
const DefaultProbeConcurrency = 8

// DefaultLiveStacks is how many processes a report asks for live stacks
// by default: one round of DefaultProbeConcurrency. Each answer costs its
// process an execution trace (some 7-9 ms of its CPU at 1,000 goroutines,
// docs/benchmarks.md) and lockwatch a parse, so a run of many stuck
// processes is read in bounded time; the first findings' live stacks are
// the ones a reader looks at first.
const DefaultLiveStacks = DefaultProbeConcurrency

// AllLiveStacks as Options.LiveStacks asks every process involved for its
// live stacks.
const AllLiveStacks = -1

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
	if o.ProbeConcurrency <= 0 {
		o.ProbeConcurrency = DefaultProbeConcurrency
	}
	if o.LiveStacks == 0 {
		o.LiveStacks = DefaultLiveStacks
	}
	return o
}

// node is a goroutine of the wait-for graph.
type node = lockstate.Party

// lock is a lock of the merged snapshots, with the resolver of the
// snapshot it came from (stack ids mean something only to their backend).
type lock struct {
	*lockstate.Lock
	res   lockstate.Resolver
	label string // the backend's pprof wait label
}

// wait is one waiter record: the goroutine w waits for l.
type wait struct {
	l *lock
	w *lockstate.Waiter
}

// stackRef is a recorded stack: an id that its backend's resolver knows.
type stackRef struct {
	res lockstate.Resolver
	id  uint64
}

// graph is the merged snapshots seen as a wait-for graph, with the
// liveness of every process they name. Building it and finding in it read
// nothing: the findings are a pure function of the snapshots and the
// statuses.
type graph struct {
	run       string
	taken     time.Time
	locks     []*lock
	processes []lockstate.Process
	events    []lockstate.Event
	notes     []string
	unlisted  map[string]int // lockstate.Snapshot.Unlisted, summed
	status    map[procid.ID]procid.Status
	opts      Options
	// sketch says a source's snapshot was a sketch (lockstate.Sketcher):
	// its findings are read again in full before any report.
	sketch bool

	waits map[node][]wait // goroutine -> the locks it waits for
	// end is when the run ended, when every process of it has (stopClock):
	// its durations run to end rather than to taken.
	end time.Time

	orders        []orderEdge // the lock-order graph's edges (order.go)
	ordersDropped uint64
}

// merge joins the snapshots of several sources: their locks and events
// side by side, a process named by several once.
func merge(snaps []*lockstate.Snapshot) *graph {
	g := &graph{waits: make(map[node][]wait)}
	seen := make(map[procid.ID]int)
	// Events are the bulk of a snapshot (up to the reader's bound, 65,536
	// by default): one source's are taken as they are, several sources'
	// copied once into a slice of the right size.
	events, with := 0, 0
	for _, s := range snaps {
		if len(s.Events) > 0 {
			events, with = events+len(s.Events), with+1
		}
	}
	if with > 1 {
		g.events = make([]lockstate.Event, 0, events)
	}
	for i, s := range snaps {
		if i == 0 {
			g.run = s.Run
		}
		if s.Taken.After(g.taken) {
			g.taken = s.Taken
		}
		for _, p := range s.Processes {
			if j, ok := seen[p.ID]; ok {
				q := &g.processes[j]
				q.Role, q.Command = cmp.Or(q.Role, p.Role), cmp.Or(q.Command, p.Command)
				q.Status = cmp.Or(q.Status, p.Status)
				continue
			}
			seen[p.ID] = len(g.processes)
			g.processes = append(g.processes, p)
		}
		for j := range s.Locks {
			l := &lock{Lock: &s.Locks[j], res: s.Stacks, label: s.WaitLabel}
			g.locks = append(g.locks, l)
			for k := range l.Waiters {
				w := &l.Waiters[k]
				g.waits[w.Party] = append(g.waits[w.Party], wait{l, w})
			}
		}
		if with > 1 {
			g.events = append(g.events, s.Events...)
		} else if len(s.Events) > 0 {
			g.events = s.Events
		}
		for j := range s.Orders {
			g.orders = append(g.orders, orderEdge{&s.Orders[j], s.Stacks})
		}
		g.ordersDropped += s.OrdersDropped
		g.notes = append(g.notes, s.Notes...)
		for what, n := range s.Unlisted {
			if g.unlisted == nil {
				g.unlisted = make(map[string]int)
			}
			g.unlisted[what] += n
		}
	}
	if with > 1 {
		slices.SortStableFunc(g.events, func(a, b lockstate.Event) int { return a.Time.Compare(b.Time) })
	}
	return g
}

// identities returns every process identity the graph names, for the
// liveness checks.
func (g *graph) identities() []procid.ID {
	seen := make(map[procid.ID]bool)
	var out []procid.ID
	add := func(id procid.ID) {
		if !id.IsZero() && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, p := range g.processes {
		add(p.ID)
	}
	for _, l := range g.locks {
		for _, h := range l.Holders {
			add(h.ID)
		}
	}
	for _, l := range g.locks {
		for _, w := range l.Waiters {
			add(w.ID)
		}
		for _, lo := range l.Lost {
			add(lo.ID)
		}
	}
	return out
}

func (g *graph) statusOf(id procid.ID) procid.Status { return g.status[id] }

// now is the time a report's durations run to: the reading's, or the run's
// end once every process of it has ended.
func (g *graph) now() time.Time {
	if !g.end.IsZero() {
		return g.end
	}
	return g.taken
}

// stopClock: when every process of the run is proved to have ended (closed
// or dead; none alive, none unknown), nothing in the run can change any
// more, so its durations (held for, waiting for) run to its last record (a
// close, an event, an acquire, a wait) rather than to the reading: an ended
// run reads the same however late it is read. A note says so.
func (g *graph) stopClock() {
	if len(g.processes) == 0 {
		return
	}
	var end time.Time
	later := func(t time.Time) {
		if t.After(end) {
			end = t
		}
	}
	for _, p := range g.processes {
		if !g.status[p.ID].Dead() {
			return // alive, or not known to have ended
		}
		later(p.ClosedAt)
	}
	for _, e := range g.events {
		later(e.Time)
	}
	for _, l := range g.locks {
		for _, h := range l.Holders {
			later(h.Since)
		}
		for _, w := range l.Waiters {
			later(w.Since)
		}
	}
	if end.IsZero() || end.After(g.taken) {
		return
	}
	g.end = end
	g.notes = append(g.notes, fmt.Sprintf("the run has ended (none of its processes is alive): durations are up to its last record, at %s",
		end.Format("15:04:05.000")))
}

// process returns the process entry of id; an id without a start time
// (a holder named by its lock word alone) matches its pid.
func (g *graph) process(id procid.ID) (*lockstate.Process, bool) {
	for i := range g.processes {
		p := &g.processes[i]
		if p.Host == id.Host && p.PID == id.PID && (id.Start == 0 || p.Start == id.Start) {
			return p, true
		}
	}
	return nil, false
}

// findings is the analysis: every finding the graph shows, most severe
// first.
func (g *graph) findings() []Finding {
	out, dead := g.deadHolders()
	g.behind(out, dead)
	out = append(out, g.lostLocks()...)
	out = append(out, g.cycles(dead)...)
	out = append(out, g.stuckHolders()...)
	out = append(out, g.staleWaiters()...)
	out = append(out, g.lockOrders()...)
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(a.Kind.rank()-b.Kind.rank(), strings.Compare(a.Lock, b.Lock), strings.Compare(a.LockKind, b.LockKind))
	})
	return out
}

// deadHolders finds the locks held by a goroutine whose process is proven
// dead, by the host or by the backend itself (Lock.Abandoned). It returns
// the dead holders too: no cycle goes through them.
func (g *graph) deadHolders() ([]Finding, map[node]bool) {
	var out []Finding
	dead := make(map[node]bool)
	for _, l := range g.locks {
		if len(l.Holders) == 0 && l.Abandoned != nil {
			f := g.deadHolder(l, nil)
			out = append(out, f)
		}
		for i := range l.Holders {
			h := &l.Holders[i]
			if l.Abandoned == nil && !g.statusOf(h.ID).Dead() {
				continue
			}
			dead[h.Party] = true
			out = append(out, g.deadHolder(l, h))
		}
	}
	return out, dead
}

func (g *graph) deadHolder(l *lock, h *lockstate.Holder) Finding {
	f := Finding{Kind: DeadHolder, Lock: l.Name, LockKind: l.Kind, Waiters: g.liveWaiters(l)}
	how := ""
	if a := l.Abandoned; a != nil {
		f.Proof, f.proven = string(a.Reason), true
		if a.Says != "" {
			how = " (" + a.Says + ")"
		}
	}
	who := "an unknown process"
	if h != nil {
		p := g.holder(l, h)
		if a := l.Abandoned; a != nil && !g.statusOf(h.ID).Dead() {
			// The backend saw the holder die; its pid may have been
			// reused since, or the host's check lags.
			p.Alive, p.State, p.Death = false, "dead", string(a.Reason)
			if a.Reason == lockstate.LeaseExpired {
				p.State = procid.Expired.String()
			}
		}
		f.Holder = &p
		who = fmt.Sprintf("%s (%s)", p.who(), p.State)
	}
	f.Summary = fmt.Sprintf("%s holds %q%s; %s", who, l.Name, how, waitersPhrase(f.Waiters))
	recovery := cmp.Or(l.Recovery, "kill the run to free its waiters")
	if h != nil {
		f.Next = fmt.Sprintf("find why pid %d died holding %q (its acquire stack is below); %s", h.PID, l.Name, recovery)
	} else {
		f.Next = fmt.Sprintf("no holder record names the dead holder of %q (recording off, or it died between taking the lock and recording it): the processes table lists the processes that died; %s", l.Name, recovery)
	}
	return f
}

// lostLocks finds the goroutines that lost a lock they held (Lock.Lost)
// and are not proved dead: they may still be inside the critical section,
// beside the lock's new holder. One proved dead by its host (gone, zombie,
// reused) is no longer inside anything; an expired lease proves no death
// (the process may be cut off from the store), so the finding stays, said
// as possible.
func (g *graph) lostLocks() []Finding {
	var out []Finding
	for _, l := range g.locks {
		for i := range l.Lost {
			lo := &l.Lost[i]
			st := g.statusOf(lo.ID)
			if st == procid.Gone || st == procid.Zombie || st == procid.Reused {
				continue
			}
			running := "is still running"
			if st != procid.Alive {
				running = "may still be running (it is not proved dead)"
			}
			p := g.party(lo.Party, lo.Read, lo.Since, stackRef{l.res, lo.Stack})
			how := ""
			if lo.Says != "" {
				how = " (" + lo.Says + ")"
			}
			now := "nobody holds it now"
			if len(l.Holders) > 0 {
				h := g.holder(l, &l.Holders[0])
				now = fmt.Sprintf("%s g%d holds it now", h.who(), h.Goroutine)
			}
			out = append(out, Finding{Kind: LostLock, Lock: l.Name, LockKind: l.Kind, Holder: &p, Waiters: g.liveWaiters(l),
				Summary: fmt.Sprintf("%s g%d lost %q while it held it%s and %s; %s", p.who(), lo.Goroutine, l.Name, how, running, now),
				Next: fmt.Sprintf("what %q protects may have been changed by two goroutines at once: check it; find why pid %d stopped keeping its hold (a pause, GC, a partition) and make its writes conditional on still holding the lock (a fencing token)",
					l.Name, lo.PID)})
		}
	}
	return out
}

// maxBehind bounds a dead-holder's Behind list.
const maxBehind = 1000

// behind fills in each dead-holder finding the goroutines stuck behind
// its waiters, through locks of every kind (breadth first, in the wait-for
// graph's edge order, so the same state always reads the same way).
func (g *graph) behind(fs []Finding, dead map[node]bool) {
	adj := g.edges(dead)
	into := map[node][]edge{} // edges by the goroutine waited for
	var froms []node
	for n := range adj {
		froms = append(froms, n)
	}
	slices.SortFunc(froms, compareNodes)
	for _, n := range froms {
		for _, e := range adj[n] {
			into[e.to] = append(into[e.to], e)
		}
	}
	for i := range fs {
		f := &fs[i]
		if f.Kind != DeadHolder {
			continue
		}
		seen := map[node]bool{}
		queue := []node{}
		for _, w := range f.Waiters {
			n := node{ID: procid.ID{Host: w.Host, PID: w.PID, Start: w.Start}, Goroutine: w.Goroutine}
			seen[n] = true
			queue = append(queue, n)
		}
		for len(queue) > 0 && len(f.Behind) < maxBehind {
			n := queue[0]
			queue = queue[1:]
			for _, e := range into[n] {
				if seen[e.from] || len(f.Behind) >= maxBehind {
					continue
				}
				seen[e.from] = true
				queue = append(queue, e.from)
				f.Behind = append(f.Behind, Step{Party: g.waiter(e.l, e.w), WaitsFor: e.l.Name})
			}
		}
		if n := len(f.Behind); n > 0 {
			f.Summary += fmt.Sprintf(", and %d more behind %s", n, pronoun(len(f.Waiters)))
			var locks []string
			for _, st := range f.Behind {
				if !slices.Contains(locks, st.WaitsFor) {
					locks = append(locks, st.WaitsFor)
				}
			}
			f.Summary += fmt.Sprintf(" (waiting for %s)", quoteList(locks))
		}
	}
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// quoteList is `"a"`, `"a" and "b"`, `"a", "b" and "c"`.
func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// stuckHolders finds the locks held by a live goroutine that waits for no
// lock, for StuckAfter, while another goroutine has waited as long.
func (g *graph) stuckHolders() []Finding {
	var out []Finding
	for _, l := range g.locks {
		if l.Abandoned != nil {
			continue
		}
		for i := range l.Holders {
			if f, ok := g.stuck(l, &l.Holders[i]); ok {
				out = append(out, f)
			}
		}
	}
	return out
}

func (g *graph) stuck(l *lock, h *lockstate.Holder) (Finding, bool) {
	if g.statusOf(h.ID) != procid.Alive || h.Since.IsZero() {
		return Finding{}, false
	}
	if len(g.waits[h.Party]) > 0 {
		return Finding{}, false // part of a chain or loop, not the end of one
	}
	held := g.taken.Sub(h.Since)
	if held < g.opts.StuckAfter {
		return Finding{}, false
	}
	waiters := g.liveWaiters(l)
	var longest time.Duration
	for _, w := range waiters {
		longest = max(longest, time.Duration(w.For))
	}
	if longest < g.opts.StuckAfter {
		return Finding{}, false
	}
	p := g.holder(l, h)
	summary := fmt.Sprintf("%s%s has held %q for %s while %s", p.who(), gsuffix(h.Goroutine), l.Name,
		held.Round(time.Millisecond), waitersPhrase(waiters))
	if h.Inferred != "" {
		// The holder and how long it has held are what its backend
		// inferred (a lower bound), never a record.
		summary = fmt.Sprintf("%s%s has held %q for at least %s while %s; inferred, not proven: %s", p.who(), gsuffix(h.Goroutine), l.Name,
			held.Round(time.Millisecond), waitersPhrase(waiters), h.Inferred)
	}
	if h.SinceSeen {
		// The lock keeps no time: held at least since the reader first
		// saw it, watching.
		summary = fmt.Sprintf("%s%s has held %q for at least %s (at least since lockwatch started watching it) while %s", p.who(), gsuffix(h.Goroutine), l.Name,
			held.Round(time.Millisecond), waitersPhrase(waiters))
	}
	next := fmt.Sprintf("see what pid %d%s is blocked on (its stacks are below: where it took the lock, and what it does now if its probe answered): a pipe, channel or join that needs a waiter to move first is a deadlock", h.PID, gsuffix(h.Goroutine))
	if h.PID <= 0 {
		// No process is known (a session of a lock lockwatch did not take).
		next = fmt.Sprintf("find the program behind %s (no pid is known: the lock is not lockwatch's) and see what it is blocked on while it holds %q", p.who(), l.Name)
	}
	if h.Inferred != "" {
		// No record says where it took the lock: the evidence is in the
		// summary, and its goroutines are one command away.
		next = fmt.Sprintf("see what pid %d%s is blocked on ('lockwatch stacks %d' prints its goroutines; the summary says where the evidence puts the lock): a pipe, channel or join that needs a waiter to move first is a deadlock", h.PID, gsuffix(h.Goroutine), h.PID)
	}
	return Finding{Kind: StuckHolder, Lock: l.Name, LockKind: l.Kind, Holder: &p, Waiters: waiters,
		Summary: summary, Next: next}, true
}

// staleWaiters finds the waiter records of dead processes.
func (g *graph) staleWaiters() []Finding {
	var out []Finding
	for _, l := range g.locks {
		for i := range l.Waiters {
			w := &l.Waiters[i]
			if !g.statusOf(w.ID).Dead() {
				continue
			}
			p := g.waiter(l, w)
			out = append(out, Finding{Kind: StaleWaiter, Lock: l.Name, LockKind: l.Kind, Waiters: []Party{p},
				Summary: fmt.Sprintf("%s (%s) is recorded waiting for %q", p.who(), p.State, l.Name),
				Next:    "harmless to the lock itself, but the process died inside Lock; look for why it died (stacks below)"})
		}
	}
	return out
}

// liveWaiters returns the waiters of a lock not proven dead, longest first.
func (g *graph) liveWaiters(l *lock) []Party {
	out := []Party{}
	for i := range l.Waiters {
		w := &l.Waiters[i]
		if !g.statusOf(w.ID).Dead() {
			out = append(out, g.waiter(l, w))
		}
	}
	return out
}

func (g *graph) holder(l *lock, h *lockstate.Holder) Party {
	p := g.party(h.Party, h.Read, h.Since, stackRef{l.res, h.Stack})
	p.Inferred = h.Inferred
	return p
}

func (g *graph) waiter(l *lock, w *lockstate.Waiter) Party {
	return g.party(w.Party, w.Read, w.Since, stackRef{l.res, w.Stack})
}

// party describes a goroutine of the run. Its call site (Where) is
// resolved when the report is built.
func (g *graph) party(n node, read bool, since time.Time, stack stackRef) Party {
	st := g.statusOf(n.ID)
	p := Party{Host: n.Host, PID: n.PID, Start: n.Start, Goroutine: n.Goroutine, Alive: st == procid.Alive,
		State: st.String(), Death: string(lockstate.ReasonOf(st)), Read: read, Since: since, stack: stack}
	if !since.IsZero() {
		p.For = Duration(max(g.now().Sub(since), 0))
	}
	if pr, ok := g.process(n.ID); ok {
		p.Role = pr.Role
	}
	return p
}

// waitersPhrase counts the waiters of a lock: goroutines, or processes
// when every waiter is a process as a whole (a kernel file lock's).
func waitersPhrase(ws []Party) string {
	one, many := "goroutine", "goroutines"
	if len(ws) > 0 && !slices.ContainsFunc(ws, func(p Party) bool { return p.Goroutine != lockstate.WholeProcess }) {
		one, many = "process", "processes"
	}
	switch len(ws) {
	case 0:
		return "no goroutine waits for it"
	case 1:
		return "1 " + one + " waits for it"
	}
	return fmt.Sprintf("%d %s wait for it", len(ws), many)
}
