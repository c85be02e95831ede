package report

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/lockwatch/lockwatch/lockstate"
)

// The lock-order graph has a node per lock (kind and name) and an edge
// A -> B when some goroutine took B while it held A, as the backends
// recorded it (lockstate.OrderEdge). A cycle in it is a deadlock waiting
// for its interleaving: goroutines that take its edges at the same time
// wait for each other for ever. Each strongly connected component of two
// locks or more is one lock-order finding, reported as its shortest loop
// through the smallest lock. It is a warning, not a deadlock: the edges
// are records of what was taken, not of anything waiting now; they are
// never retracted, so the finding needs no confirming snapshot.

// An OrderStep is one edge of a lock-order cycle: the goroutine (Party)
// took lock To while it held lock From. Party.Where is where it took To;
// HeldAt where it took From.
type OrderStep struct {
	Party
	From     string `json:"from"`
	To       string `json:"to"`
	LockKind string `json:"lock_kind,omitempty"`
	// HeldAt is the call site that took From; HeldStack and Stack are the
	// recorded stacks of the two acquires, innermost first (empty if the
	// process's dictionary does not have them).
	HeldAt    *FrameJSON  `json:"held_at,omitempty"`
	HeldStack []FrameJSON `json:"held_stack"`
	Stack     []FrameJSON `json:"stack"`

	held stackRef
}

// orderEdge is an edge of the merged snapshots, with its backend's resolver.
type orderEdge struct {
	*lockstate.OrderEdge
	res lockstate.Resolver
}

// lockOrders finds the cycles of the lock-order graph.
func (g *graph) lockOrders() []Finding {
	if len(g.orders) == 0 {
		return nil
	}
	out := map[lockstate.Key][]*orderEdge{}
	var nodes []lockstate.Key
	for i := range g.orders {
		e := &g.orders[i]
		if e.From == e.To {
			continue
		}
		if _, ok := out[e.From]; !ok {
			nodes = append(nodes, e.From)
		}
		out[e.From] = append(out[e.From], e)
		if _, ok := out[e.To]; !ok {
			out[e.To] = nil
			nodes = append(nodes, e.To)
		}
	}
	less := func(a, b lockstate.Key) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Kind, b.Kind))
	}
	slices.SortFunc(nodes, less)
	for _, es := range out {
		slices.SortFunc(es, func(a, b *orderEdge) int { return less(a.To, b.To) })
	}
	var fs []Finding
	for _, comp := range sccs(nodes, out) {
		if len(comp) < 2 {
			continue
		}
		slices.SortFunc(comp, less)
		loop := shortestLoop(comp[0], comp, out)
		if loop == nil {
			continue // cannot happen in a component of two nodes or more
		}
		fs = append(fs, g.orderFinding(loop, len(comp)))
	}
	return fs
}

// sccs returns the strongly connected components of the graph (Tarjan's
// algorithm, iterative so that a long chain of locks cannot overflow the
// stack).
func sccs(nodes []lockstate.Key, out map[lockstate.Key][]*orderEdge) [][]lockstate.Key {
	index := map[lockstate.Key]int{}
	low := map[lockstate.Key]int{}
	on := map[lockstate.Key]bool{}
	var stack []lockstate.Key
	var comps [][]lockstate.Key
	type frame struct {
		v lockstate.Key
		i int // next edge of v to follow
	}
	n := 0
	for _, root := range nodes {
		if _, seen := index[root]; seen {
			continue
		}
		call := []frame{{v: root}}
		index[root], low[root] = n, n
		n++
		stack = append(stack, root)
		on[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.i < len(out[f.v]) {
				w := out[f.v][f.i].To
				f.i++
				if _, seen := index[w]; !seen {
					index[w], low[w] = n, n
					n++
					stack = append(stack, w)
					on[w] = true
					call = append(call, frame{v: w})
				} else if on[w] {
					low[f.v] = min(low[f.v], index[w])
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
			if low[v] == index[v] {
				var comp []lockstate.Key
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					on[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				comps = append(comps, comp)
			}
		}
	}
	return comps
}

// shortestLoop returns the shortest loop of edges from start back to it,
// within the component comp (breadth first, edges in order of their
// target's name, so the loop is deterministic).
func shortestLoop(start lockstate.Key, comp []lockstate.Key, out map[lockstate.Key][]*orderEdge) []*orderEdge {
	in := make(map[lockstate.Key]bool, len(comp))
	for _, k := range comp {
		in[k] = true
	}
	via := map[lockstate.Key]*orderEdge{}
	queue := []lockstate.Key{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, e := range out[v] {
			if !in[e.To] {
				continue
			}
			if e.To == start {
				loop := []*orderEdge{e}
				for k := v; k != start; k = via[k].From {
					loop = append(loop, via[k])
				}
				slices.Reverse(loop)
				return loop
			}
			if _, seen := via[e.To]; !seen {
				via[e.To] = e
				queue = append(queue, e.To)
			}
		}
	}
	return nil
}

// orderFinding describes a loop of the lock-order graph. The next step
// names the edge that closes the loop: the one that takes the loop's first
// (smallest) lock while holding another.
func (g *graph) orderFinding(loop []*orderEdge, locks int) Finding {
	first := loop[0].From
	f := Finding{Kind: LockOrder, Lock: first.Name, LockKind: first.Kind, Waiters: []Party{}, proven: true}
	names := []string{first.Name}
	var took []string
	for _, e := range loop {
		st := OrderStep{Party: g.party(e.Party, false, e.Time, stackRef{e.res, e.ToStack}),
			From: e.From.Name, To: e.To.Name, LockKind: e.To.Kind, held: stackRef{e.res, e.FromStack},
			HeldStack: []FrameJSON{}, Stack: []FrameJSON{}}
		st.For = 0 // an edge is a record of the past, not something lasting
		f.Order = append(f.Order, st)
		names = append(names, e.To.Name)
		took = append(took, fmt.Sprintf("%s g%d took %s holding %s", st.who(), e.Goroutine, e.To.Name, e.From.Name))
	}
	f.Summary = fmt.Sprintf("lock order %s can deadlock: %s", strings.Join(names, " -> "), strings.Join(took, "; "))
	if locks > len(loop) {
		f.Others = locks - len(loop)
		f.Summary += fmt.Sprintf(" (%d more locks are ordered both ways with these)", f.Others)
	}
	return f
}

// orderNext is the next step of a lock-order finding, once the call sites
// are known: take the loop's locks in one order; the closing edge is the
// one taken against it.
func (f *Finding) orderNext() string {
	last := f.Order[len(f.Order)-1]
	at := "an unknown site (no stack was recorded)"
	if last.Where != nil {
		at = where(last.Where)
	}
	return fmt.Sprintf("take %s before %s everywhere; the %s-then-%s order is taken at %s (pid %d goroutine %d)",
		last.To, last.From, last.From, last.To, at, last.PID, last.Goroutine)
}

// orderStacks resolves the stacks of the lock-order findings' edges and
// writes their next step.
func (r *Report) orderStacks() {
	resolve := func(p *Party, ref stackRef) []FrameJSON {
		if ref.res == nil || ref.id == 0 {
			return []FrameJSON{}
		}
		fs, ok := ref.res.Stack(p.id(), ref.id)
		if !ok {
			return []FrameJSON{}
		}
		return framesOf(fs)
	}
	site := func(fs []FrameJSON) *FrameJSON {
		for i := range fs {
			if !isMachinery(fs[i].Func) {
				return &fs[i]
			}
		}
		return nil
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if len(f.Order) == 0 {
			continue
		}
		for j := range f.Order {
			st := &f.Order[j]
			st.Stack = resolve(&st.Party, st.stack)
			st.HeldStack = resolve(&st.Party, st.held)
			if w := site(st.Stack); w != nil {
				c := *w
				st.Where = &c
			}
			if w := site(st.HeldStack); w != nil {
				c := *w
				st.HeldAt = &c
			}
		}
		f.Next = f.orderNext()
	}
}

// writeOrder renders a lock-order finding's edges, each with its two
// acquire sites and stacks.
func (e *errWriter) writeOrder(f *Finding, brief bool) {
	const frames = 8 // of each stack, from the call site out
	trim := func(fs []FrameJSON) []FrameJSON {
		for i := range fs {
			if !isMachinery(fs[i].Func) {
				fs = fs[i:]
				break
			}
		}
		if brief {
			return nil
		}
		return fs[:min(len(fs), frames)]
	}
	for _, st := range f.Order {
		from, to := escape(st.From), escape(st.To)
		e.printf("  %s -> %s: %s goroutine %d took %s while holding %s\n", from, to, escape(st.who()), st.Goroutine, to, from)
		e.printf("    took %s at %s\n", from, escape(where(st.HeldAt)))
		for _, fr := range trim(st.HeldStack) {
			e.printf("        %s\n", escape(frameLine(fr)))
		}
		e.printf("    took %s at %s\n", to, escape(where(st.Where)))
		for _, fr := range trim(st.Stack) {
			e.printf("        %s\n", escape(frameLine(fr)))
		}
	}
}

func frameLine(f FrameJSON) string {
	if f.File == "" {
		return f.Func
	}
	return fmt.Sprintf("%s %s:%d", f.Func, f.File, f.Line)
}
