package report

import (
	"container/heap"
	"context"
	"slices"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// build makes the report of a graph and its confirmed findings: the
// tables, then the call sites of every party, then the stacks of the
// goroutines the findings involve.
func build(ctx context.Context, g *graph, fs []Finding, src Sources, opts Options) *Report {
	r := &Report{Schema: Schema, Run: g.run, Taken: g.taken, Findings: fs,
		Locks: []LockRow{}, Waiters: []WaiterRow{}, Processes: []ProcRow{}, Events: []EventRow{},
		Stacks: []StackRow{}, Notes: append([]string{}, g.notes...), OrdersDropped: g.ordersDropped,
		Unlisted: g.unlisted}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	r.Locks = g.lockRows()
	r.Waiters = g.waiterRows()
	r.Processes = g.processRows(src.Host)
	r.Events = g.eventRows(r.Findings, opts.Events)
	r.locate()
	r.orderStacks()
	stacks(ctx, g, r, src.Stacks, src.Remote, opts)
	r.Notes = append(r.Notes, g.resolverNotes()...)
	return r
}

// resolverNotes are what the resolvers say they could not resolve (a
// stack dictionary past its reader's limits), once the stacks are read. A
// resolver says so with a Notes() []string method.
func (g *graph) resolverNotes() []string {
	var out []string
	seen := make(map[string]bool) // locks share their backend's resolver
	for _, l := range g.locks {
		if n, ok := l.res.(interface{ Notes() []string }); ok {
			for _, note := range n.Notes() {
				if !seen[note] {
					seen[note] = true
					out = append(out, note)
				}
			}
		}
	}
	return out
}

func (g *graph) lockRows() []LockRow {
	out := make([]LockRow, 0, len(g.locks))
	n, held := 0, 0
	for _, l := range g.locks {
		n += len(l.Facts.Extra)
		if len(l.Holders) > 0 {
			held++
		}
	}
	buf := make([]Fact, n)
	firsts := make([]Party, held) // the rows' Holder, in one array
	for _, l := range g.locks {
		row := LockRow{Name: l.Name, Kind: l.Kind, State: "free", Waiting: len(l.Waiters), Facts: factsOf(l.Facts, &buf)}
		for i := range l.Holders {
			p := g.holder(l, &l.Holders[i])
			if i == 0 {
				firsts[0] = p
				row.Holder, row.State = &firsts[0], "held"
				firsts = firsts[1:]
			}
			if len(l.Holders) > 1 {
				row.Holders = append(row.Holders, p)
			}
		}
		if a := l.Abandoned; a != nil {
			row.State = string(a.Reason)
		}
		if len(l.Holders) == 0 && len(l.Lost) > 0 && l.Abandoned == nil {
			row.State = "lost" // its last holder lost it and runs on
		}
		out = append(out, row)
	}
	return out
}

// waiterRows lists every waiter, longest-waiting first: each lock's
// waiters by the time they began to wait, or, when some have no time (a
// session of etcd's own lock), in the order the source gives them
// (lockstate.Lock.Waiters: its queue, an etcd lock's by create revision),
// the only order known; the locks' lists merged by the times of their
// first waiters not yet listed (a waiter with no time first, as the
// longest waiting may be; equal times in the locks' order).
func (g *graph) waiterRows() []WaiterRow {
	out := []WaiterRow{}
	var h waiterHeap
	for _, l := range g.locks {
		if len(l.Waiters) == 0 {
			continue
		}
		ws := make([]WaiterRow, 0, len(l.Waiters))
		for i := range l.Waiters {
			ws = append(ws, WaiterRow{Party: g.waiter(l, &l.Waiters[i]), Lock: l.Name, LockKind: l.Kind})
		}
		if !slices.ContainsFunc(ws, func(w WaiterRow) bool { return w.Since.IsZero() }) {
			slices.SortStableFunc(ws, func(a, b WaiterRow) int { return a.Since.Compare(b.Since) })
		}
		h = append(h, waiterList{ws, len(h)})
	}
	heap.Init(&h)
	for len(h) > 0 {
		out = append(out, h[0].rows[0])
		if h[0].rows = h[0].rows[1:]; len(h[0].rows) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return out
}

// waiterList is one lock's waiters not yet listed, the n-th lock.
type waiterList struct {
	rows []WaiterRow
	n    int
}

// waiterHeap orders the locks' lists by their first waiters' times, then
// by the locks' order.
type waiterHeap []waiterList

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	if c := h[i].rows[0].Since.Compare(h[j].rows[0].Since); c != 0 {
		return c < 0
	}
	return h[i].n < h[j].n
}
func (h waiterHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *waiterHeap) Push(x any)   { *h = append(*h, x.(waiterList)) }
func (h *waiterHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (g *graph) processRows(h Host) []ProcRow {
	out := []ProcRow{}
	n := 0
	for _, p := range g.processes {
		n += len(p.Facts.Extra)
	}
	buf := make([]Fact, n)
	for _, p := range g.processes {
		st := g.statusOf(p.ID)
		row := ProcRow{Host: p.Host, PID: p.PID, Start: p.Start, Role: p.Role, Command: p.Command,
			Alive: st == procid.Alive, State: st.String(), Started: p.Started, Facts: factsOf(p.Facts, &buf)}
		if p.Role == "" && p.Command == "" && st == procid.Alive && p.Host == "" && h != nil {
			row.Command = h.Command(p.PID)
		}
		switch {
		case p.Closed:
			row.Exit, row.ExitedAt = "closed", p.ClosedAt
			if st.Dead() {
				row.State = Exited // it left the run cleanly, then ended: not a death
			}
		case st.Dead():
			row.Exit = "died"
		}
		out = append(out, row)
	}
	return out
}

// eventRows lists the recent events of the locks the findings name, at
// most n per lock, oldest first.
func (g *graph) eventRows(fs []Finding, n int) []EventRow {
	involved := make(map[string]bool)
	for _, f := range fs {
		involved[f.Lock] = true
		for _, st := range f.Cycle {
			involved[st.WaitsFor] = true
		}
		for _, st := range f.Behind {
			involved[st.WaitsFor] = true
		}
		for _, st := range f.Order {
			involved[st.From], involved[st.To] = true, true // every lock of the loop
		}
	}
	out := []EventRow{}
	perLock := make(map[lockstate.Key]int)
	for i := len(g.events) - 1; i >= 0; i-- {
		e := g.events[i]
		if !involved[e.Lock.Name] || perLock[e.Lock] >= n {
			continue
		}
		perLock[e.Lock]++
		out = append(out, EventRow{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Lock: e.Lock.Name, Host: e.Host, PID: e.PID, Goroutine: e.Goroutine, Token: e.Token})
	}
	slices.Reverse(out) // oldest first, as the sources list them
	return out
}

// locate fills in the call site (Where) of every party of the report from
// its recorded stack.
func (r *Report) locate() {
	at := func(p *Party) {
		if p.stack.res == nil || p.stack.id == 0 {
			return
		}
		if fs, ok := p.stack.res.Stack(p.id(), p.stack.id); ok {
			if f, ok := callSite(fs); ok {
				fj := frameOf(f)
				p.Where = &fj
			}
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Holder != nil {
			at(f.Holder)
		}
		for j := range f.Waiters {
			at(&f.Waiters[j])
		}
		for j := range f.Cycle {
			at(&f.Cycle[j].Party)
		}
		for j := range f.Behind {
			at(&f.Behind[j].Party)
		}
	}
	for i := range r.Locks {
		if h := r.Locks[i].Holder; h != nil {
			at(h)
		}
		for j := range r.Locks[i].Holders {
			at(&r.Locks[i].Holders[j])
		}
	}
	for i := range r.Waiters {
		at(&r.Waiters[i].Party)
	}
}
