package report

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/lockwatch/lockwatch/lockstate"
)

// edge says that goroutine from waits (record w) for lock l, which to
// holds, or, for a reader, which to is queued to write before it.
type edge struct {
	from, to node
	l        *lock
	w        *lockstate.Waiter
}

// edges builds the wait-for graph among goroutines not proven dead. A
// goroutine may have any number of edges: a writer waits for every reader
// holding the lock; a reader waits for the writer holding it, or, while
// readers alone hold it, for the writers waiting (lockstate.Waiter). Locks
// whose holder is dead end a chain, never close a loop: they are
// dead-holder findings.
func (g *graph) edges(dead map[node]bool) map[node][]edge {
	live := func(p lockstate.Party) bool {
		return p.Goroutine != 0 && !g.statusOf(p.ID).Dead() && !dead[p]
	}
	out := make(map[node][]edge)
	for _, l := range g.locks {
		if l.Abandoned != nil || len(l.Waiters) == 0 {
			continue // no edge from a lock nobody waits for (most of a holder of 10,000's)
		}
		var holders, writers []node
		writeHeld := false
		for _, h := range l.Holders {
			writeHeld = writeHeld || !h.Read
			if live(h.Party) {
				holders = append(holders, h.Party)
				if !h.Read {
					writers = append(writers, h.Party)
				}
			}
		}
		var queued []node // writers waiting
		for _, w := range l.Waiters {
			if !w.Read && live(w.Party) {
				queued = append(queued, w.Party)
			}
		}
		for i := range l.Waiters {
			w := &l.Waiters[i]
			if !live(w.Party) {
				continue
			}
			to := holders
			if w.Read {
				to = writers
				if !writeHeld && len(l.Holders) > 0 {
					to = queued
				}
			}
			for _, m := range to {
				if w.Read && m == w.Party {
					continue // a reader is not queued behind itself
				}
				out[w.Party] = append(out[w.Party], edge{from: w.Party, to: m, l: l, w: w})
			}
		}
	}
	for n := range out {
		slices.SortFunc(out[n], compareEdges)
	}
	return out
}

func compareNodes(a, b node) int {
	return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID), cmp.Compare(a.Start, b.Start),
		cmp.Compare(a.Goroutine, b.Goroutine))
}

func compareEdges(a, b edge) int {
	return cmp.Or(strings.Compare(a.l.Name, b.l.Name), strings.Compare(a.l.Kind, b.l.Kind),
		compareNodes(a.from, b.from), compareNodes(a.to, b.to))
}

// cycles finds the goroutines that wait for each other: the strongly
// connected components of the wait-for graph (Tarjan), each reported once,
// as one loop through it (the shortest that starts at its smallest lock
// name) and a count of the other goroutines caught in it. When each
// goroutine waits for one holder, a component is exactly a loop.
func (g *graph) cycles(dead map[node]bool) []Finding {
	adj := g.edges(dead)
	nodes := make([]node, 0, len(adj))
	for n := range adj {
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, compareNodes)
	var out []Finding
	for _, comp := range components(nodes, adj) {
		in := make(map[node]bool, len(comp))
		for _, n := range comp {
			in[n] = true
		}
		var start *edge
		for _, n := range comp {
			for i, e := range adj[n] {
				if in[e.to] && (start == nil || compareEdges(e, *start) < 0) {
					start = &adj[n][i]
				}
			}
		}
		if start == nil {
			continue // one goroutine that waits for nobody in its component
		}
		loop := append([]edge{*start}, shortestPath(adj, in, start.to, start.from)...)
		out = append(out, g.cycleFinding(loop, len(comp)-len(loop)))
	}
	return out
}

// components returns the strongly connected components of the graph, in
// the order Tarjan's algorithm completes them.
func components(nodes []node, adj map[node][]edge) [][]node {
	index := make(map[node]int)
	low := make(map[node]int)
	on := make(map[node]bool)
	var stack []node
	var out [][]node
	var visit func(n node)
	visit = func(n node) {
		index[n] = len(index) + 1
		low[n] = index[n]
		stack = append(stack, n)
		on[n] = true
		for _, e := range adj[n] {
			switch {
			case index[e.to] == 0:
				visit(e.to)
				low[n] = min(low[n], low[e.to])
			case on[e.to]:
				low[n] = min(low[n], index[e.to])
			}
		}
		if low[n] != index[n] {
			return
		}
		var comp []node
		for {
			m := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			on[m] = false
			comp = append(comp, m)
			if m == n {
				break
			}
		}
		slices.SortFunc(comp, compareNodes)
		out = append(out, comp)
	}
	for _, n := range nodes {
		if index[n] == 0 {
			visit(n)
		}
	}
	return out
}

// shortestPath returns the edges of a shortest path from a to b inside a
// component (breadth first, edges in their sorted order); none if a is b.
func shortestPath(adj map[node][]edge, in map[node]bool, a, b node) []edge {
	if a == b {
		return nil
	}
	via := map[node]edge{}
	queue := []node{a}
	seen := map[node]bool{a: true}
	for len(queue) > 0 && !seen[b] {
		n := queue[0]
		queue = queue[1:]
		for _, e := range adj[n] {
			if in[e.to] && !seen[e.to] {
				seen[e.to], via[e.to] = true, e
				queue = append(queue, e.to)
			}
		}
	}
	var path []edge
	for n := b; n != a; n = via[n].from {
		path = append(path, via[n])
	}
	slices.Reverse(path)
	return path
}

// cycleFinding reports a loop of edges, starting at its smallest lock, so
// that the same loop always reads the same way.
func (g *graph) cycleFinding(loop []edge, others int) Finding {
	steps := make([]Step, len(loop))
	for i, e := range loop {
		steps[i] = Step{Party: g.waiter(e.l, e.w), WaitsFor: e.l.Name}
	}
	// The holder of the first lock, described by its holder record: when
	// and where it took the lock, not when and where it began to wait for
	// the next one.
	holder := steps[1%len(steps)].Party
	for i := range loop[0].l.Holders {
		if h := &loop[0].l.Holders[i]; h.Party == loop[0].to {
			holder = g.holder(loop[0].l, h)
			break
		}
	}
	f := Finding{Kind: Cycle, Lock: steps[0].WaitsFor, LockKind: loop[0].l.Kind, Holder: &holder,
		Waiters: []Party{steps[0].Party}, Cycle: steps, Others: others}
	evidence := inferredEdges(loop)
	if self, ok := selfDeadlock(loop); ok {
		f = g.selfFinding(f, loop, self)
		if len(evidence) > 0 {
			f.Kind = InferredCycle
			f.Summary += "; inferred, not proven: " + strings.Join(evidence, "; ")
		}
		return f
	}
	var b strings.Builder
	for _, st := range steps {
		fmt.Fprintf(&b, "%s%s waits for %q -> ", pidOf(&st.Party), gsuffix(st.Goroutine), st.WaitsFor)
	}
	fmt.Fprintf(&b, "%s%s", pidOf(&steps[0].Party), gsuffix(steps[0].Goroutine))
	who := "goroutines"
	if !slices.ContainsFunc(steps, func(st Step) bool { return st.Goroutine != lockstate.WholeProcess }) {
		who = "processes" // kernel file locks: processes as wholes
	}
	f.Summary = fmt.Sprintf("%d %s wait for each other: %s", len(steps), who, b.String())
	if others > 0 {
		f.Summary += fmt.Sprintf(" (and %d more goroutines are caught in the same knot)", others)
	}
	f.Next = "take these locks in one global order everywhere (their acquire sites are in the stacks below); kill one process of the loop to free the others"
	if len(evidence) > 0 {
		f.Kind = InferredCycle
		f.Summary += "; inferred, not proven: " + strings.Join(evidence, "; ")
		f.Next = "check the inferred holders in the stacks below (each holds its lock if its deferred unlock is still pending, as the evidence says); if they hold them, take these locks in one global order everywhere"
	}
	return f
}

// inferredEdges returns the evidence of each edge of loop whose holder
// its backend inferred rather than recorded: "g7 holds "a" (a pending
// deferred Unlock of it in main.f)".
func inferredEdges(loop []edge) []string {
	var out []string
	for _, e := range loop {
		for _, h := range e.l.Holders {
			if h.Party == e.to && h.Inferred != "" {
				out = append(out, fmt.Sprintf("g%d holds %q (%s)", h.Goroutine, e.l.Name, h.Inferred))
			}
		}
	}
	return out
}

// selfDeadlock tells the loops in which one goroutine waits for a lock it
// holds itself: a loop of one edge (it locks a Mutex it holds), or the
// RWMutex trap, two edges on one lock: a goroutine that read-holds it asks
// to read it again while a writer waits, so it waits for the writer, which
// waits for it. It returns the index of that goroutine's edge.
func selfDeadlock(loop []edge) (int, bool) {
	if len(loop) == 1 {
		return 0, true
	}
	if len(loop) != 2 || loop[0].l != loop[1].l {
		return 0, false
	}
	for i, e := range loop {
		if !e.w.Read {
			continue
		}
		for _, h := range e.l.Holders {
			if h.Read && h.Party == e.from {
				return i, true
			}
		}
	}
	return 0, false
}

// selfFinding turns the cycle finding f of loop into a self-deadlock: the
// goroutine of edge i waits for a lock it holds.
func (g *graph) selfFinding(f Finding, loop []edge, i int) Finding {
	e := loop[i]
	p := g.waiter(e.l, e.w)
	f.Kind, f.Lock, f.LockKind = SelfDeadlock, e.l.Name, e.l.Kind
	f.Holder, f.Waiters = &p, []Party{p}
	who := pidOf(&p) + gsuffix(p.Goroutine)
	if len(loop) == 1 {
		f.Summary = fmt.Sprintf("%s waits for %q, which it holds itself", who, e.l.Name)
		f.Next = "a Go mutex is not reentrant: release it before calling what locks it again, or have the callee assume it held (where it took it is in the locks table, where it asks again in the stacks below)"
		if p.Goroutine == lockstate.WholeProcess {
			f.Next = "the process holds this file lock through one open file and asks for it through another (a flock or OFD lock belongs to the open file, not to the process): reuse the descriptor that holds it, or unlock it first"
		}
		return f
	}
	w := loop[1-i].from
	f.Summary = fmt.Sprintf("%s asks to read %q again while it read-holds it and g%d waits to write it: "+
		"a waiting writer blocks new readers, and the writer waits for this reader", who, e.l.Name, w.Goroutine)
	f.Next = "never read-lock an RWMutex recursively: take the read lock once, at the top, and pass its protection down (where it first read-locked it is in the locks table, where it asks again in the stacks below)"
	return f
}

// gsuffix names a goroutine after its process in a summary: " g7"; nothing
// for a party that is a whole process (lockstate.WholeProcess).
func gsuffix(g int64) string {
	if g == lockstate.WholeProcess {
		return ""
	}
	return fmt.Sprintf(" g%d", g)
}

// pidOf names a party's process in a summary: "pid 42", or "pid 42 on
// host" for another machine.
func pidOf(p *Party) string {
	if p.Host != "" {
		return fmt.Sprintf("pid %d on %s", p.PID, p.Host)
	}
	return fmt.Sprintf("pid %d", p.PID)
}
