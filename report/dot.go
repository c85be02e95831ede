package report

import (
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/lockwatch/lockwatch/lockstate"
)

// WriteDot renders the report's wait-for graph in Graphviz's DOT language
// (https://graphviz.org/doc/info/lang.html), for `dot -Tsvg`:
//
//   - a goroutine is a box inside the cluster of its process, and a process
//     inside the cluster of its host when the run spans machines; a dead
//     process's cluster is red and dashed, and says how it died;
//   - a lock is an ellipse, with its kind, a state other than held and its
//     backend's facts (the first few); an edge from a lock to a goroutine says the
//     goroutine holds it ("holds", or "reads" for a reader), an edge from a
//     goroutine to a lock that the goroutine waits for it, so that a
//     deadlock cycle is a cycle of the graph;
//   - a lock-order finding adds dotted edges from lock to lock ("then":
//     the second was taken while the first was held);
//   - the edges and nodes a deadlock finding names are drawn bold and red
//     (orange for a warning), and the graph's title lists the findings.
//
// Free locks nobody waits for are left out, as in the text report. Every
// string from the run is escaped (escape, then DOT's quoting), so a lock
// name cannot end a quoted ID or inject attributes.
func (r *Report) WriteDot(w io.Writer) error {
	g := newDotGraph(r)
	return g.write(w)
}

// dotGraph collects nodes and edges before writing, so that every node is
// declared once, inside its cluster, and every edge once.
type dotGraph struct {
	r *Report
	// procs: process key -> its row (from r.Processes, or made from a party
	// when the process table does not list it).
	procs map[string]*dotProc
	locks map[string]*dotLock
	edges map[dotEdgeKey]*dotEdge
	// kindOf: a lock name -> its kind, for steps that name a lock alone;
	// "" when two kinds share the name.
	kindOf map[string]string
	order  []dotEdgeKey
	// holders: a lock's node -> the nodes of the goroutines holding it.
	holders map[string][]string
}

type dotProc struct {
	host, role, command, state string
	pid                        int
	start                      uint64
	alive                      bool
	goroutines                 map[int64]bool
}

type dotLock struct {
	name, kind, state string
	hot               string   // the colour of a finding that names it
	facts             []string // its backend's own facts, "name: value"
}

// dotFacts is how many of a lock's facts its node shows.
const dotFacts = 4

type dotEdgeKey struct{ from, to string }

type dotEdge struct {
	label string
	style string // solid, dashed, dotted
	hot   string // colour of the finding that names it, or ""
}

const (
	dotDeadlock = "red"
	dotWarning  = "darkorange"
)

func newDotGraph(r *Report) *dotGraph {
	g := &dotGraph{r: r, procs: map[string]*dotProc{}, locks: map[string]*dotLock{}, edges: map[dotEdgeKey]*dotEdge{}, kindOf: map[string]string{},
		holders: map[string][]string{}}
	for _, p := range r.Processes {
		g.procs[procKey(p.Host, p.PID, p.Start)] = &dotProc{host: p.Host, pid: p.PID, start: p.Start, role: p.Role,
			command: p.Command, state: p.State, alive: p.Alive, goroutines: map[int64]bool{}}
	}
	seen := map[string]string{}
	for _, l := range r.Locks {
		if k, ok := seen[l.Name]; ok && k != l.Kind {
			g.kindOf[l.Name] = ""
		} else {
			seen[l.Name] = l.Kind
			g.kindOf[l.Name] = l.Kind
		}
	}
	for _, l := range r.Locks {
		holders := l.Holders
		if len(holders) == 0 && l.Holder != nil {
			holders = []Party{*l.Holder}
		}
		if len(holders) == 0 && l.Waiting == 0 {
			continue // free, and nobody waits: as the text report, left out
		}
		lk := g.lock(l.Name, l.Kind, l.State)
		facts := slices.DeleteFunc(slices.Clone(l.Facts), func(f Fact) bool { return f.Raw })
		for i, f := range facts {
			if i == dotFacts {
				g.locks[lk].facts = append(g.locks[lk].facts, fmt.Sprintf("(%d more facts)", len(facts)-dotFacts))
				break
			}
			g.locks[lk].facts = append(g.locks[lk].facts, f.Name+": "+f.Value)
		}
		for _, h := range holders {
			label := "holds"
			if h.Read {
				label = "reads"
			}
			if h.Inferred != "" {
				label += " (inferred)"
			}
			hn := g.party(h)
			g.edge(lk, hn, label, "solid")
			g.holders[lk] = append(g.holders[lk], hn)
		}
	}
	for _, wr := range r.Waiters {
		label := "waits"
		if wr.Read {
			label = "waits to read"
		}
		g.edge(g.party(wr.Party), g.lock(wr.Lock, wr.LockKind, ""), label, "dashed")
	}
	for i := range r.Findings {
		g.finding(&r.Findings[i])
	}
	return g
}

func procKey(host string, pid int, start uint64) string {
	return fmt.Sprintf("p:%s/%d/%d", host, pid, start)
}

// party declares p's goroutine (and its process) and returns its node ID.
func (g *dotGraph) party(p Party) string {
	key := procKey(p.Host, p.PID, p.Start)
	proc := g.procs[key]
	if proc == nil {
		proc = &dotProc{host: p.Host, pid: p.PID, start: p.Start, role: p.Role, state: p.State, alive: p.Alive, goroutines: map[int64]bool{}}
		g.procs[key] = proc
	}
	proc.goroutines[p.Goroutine] = true
	return goroutineNode(key, p.Goroutine)
}

func goroutineNode(proc string, g int64) string {
	return "g:" + proc[len("p:"):] + "/" + strconv.FormatInt(g, 10)
}

// lock declares a lock and returns its node ID; a lock named without its
// kind (a step of a finding) is the one of that name the report lists.
func (g *dotGraph) lock(name, kind, state string) string {
	if kind == "" {
		kind = g.kindOf[name]
	}
	id := "l:" + kind + "/" + name
	l := g.locks[id]
	if l == nil {
		l = &dotLock{name: name, kind: kind}
		g.locks[id] = l
	}
	if state != "" {
		l.state = state
	}
	return id
}

func (g *dotGraph) edge(from, to, label, style string) *dotEdge {
	k := dotEdgeKey{from, to}
	e := g.edges[k]
	if e == nil {
		e = &dotEdge{label: label, style: style}
		g.edges[k] = e
		g.order = append(g.order, k)
	}
	return e
}

// heat marks an edge with a finding's colour; a deadlock's red wins over a
// warning's orange.
func (g *dotGraph) heat(from, to, label, style, colour string) {
	e := g.edge(from, to, label, style)
	if e.hot != dotDeadlock {
		e.hot = colour
	}
	for _, id := range []string{from, to} {
		if l := g.locks[id]; l != nil && l.hot != dotDeadlock {
			l.hot = colour
		}
	}
}

// finding draws what f names: a cycle's loop, a dead or stuck holder with
// its waiters and the goroutines stuck behind them, a lock-order loop.
func (g *dotGraph) finding(f *Finding) {
	colour := dotWarning
	if f.Kind.Deadlock() {
		colour = dotDeadlock
	}
	switch {
	case len(f.Cycle) > 0:
		for i, st := range f.Cycle {
			next := f.Cycle[(i+1)%len(f.Cycle)]
			lk := g.lock(st.WaitsFor, "", "")
			g.heat(g.party(st.Party), lk, "waits", "dashed", colour)
			g.heat(lk, g.party(next.Party), "holds", "solid", colour)
		}
	case len(f.Order) > 0:
		for _, st := range f.Order {
			g.heat(g.lock(st.From, st.LockKind, ""), g.lock(st.To, st.LockKind, ""), fmt.Sprintf("then (pid %d g%d)", st.PID, st.Goroutine), "dotted", colour)
		}
	}
	if f.Lock == "" {
		return
	}
	lk := g.lock(f.Lock, f.LockKind, "")
	if f.Holder != nil {
		g.heat(lk, g.party(*f.Holder), "holds", "solid", colour)
	}
	for _, w := range f.Waiters {
		if f.Kind == StaleWaiter {
			g.heat(g.party(w), lk, "waited", "dashed", colour)
			continue
		}
		g.heat(g.party(w), lk, "waits", "dashed", colour)
	}
	for _, st := range f.Behind {
		// Each goroutine behind waits for a lock held by a waiter of the
		// finding's lock, or by one already behind: the chain back to it.
		behind := g.lock(st.WaitsFor, "", "")
		g.heat(g.party(st.Party), behind, "waits", "dashed", colour)
		for _, h := range g.holders[behind] {
			g.heat(behind, h, "holds", "solid", colour)
		}
	}
}

// dotQuote quotes s as a DOT string: escaped for a terminal first (no
// control byte, no invalid UTF-8), then its backslashes and quotes.
func dotQuote(s string) string {
	s = escape(s)
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// dotLabel joins lines into one quoted label (DOT's \n between them).
func dotLabel(lines ...string) string {
	q := make([]string, 0, len(lines))
	for _, l := range lines {
		if l != "" {
			s := dotQuote(l)
			q = append(q, s[1:len(s)-1])
		}
	}
	return `"` + strings.Join(q, `\n`) + `"`
}

func (g *dotGraph) write(w io.Writer) error {
	e := &errWriter{w: w}
	r := g.r
	run := r.Run
	if strings.HasPrefix(run, "/") {
		run = path.Base(run) // a run directory: its name, as ps prints it
	}
	title := []string{"lockwatch: " + run, r.Taken.Format("2006-01-02 15:04:05")}
	if len(r.Findings) == 0 {
		title = append(title, "no finding")
	}
	for _, f := range r.Findings {
		title = append(title, strings.ToUpper(string(f.Kind))+": "+f.Summary)
	}
	e.printf("digraph lockwatch {\n")
	e.printf("\tgraph [rankdir=LR, labelloc=t, labeljust=l, fontname=\"Helvetica\", label=%s];\n", dotLabel(title...))
	e.printf("\tnode [fontname=\"Helvetica\", fontsize=10];\n")
	e.printf("\tedge [fontname=\"Helvetica\", fontsize=9];\n")

	// Processes, by host (a cluster per host only when the run spans
	// machines), in a stable order.
	keys := make([]string, 0, len(g.procs))
	for k, p := range g.procs {
		if len(p.goroutines) > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := g.procs[a], g.procs[b]
		if c := strings.Compare(pa.host, pb.host); c != 0 {
			return c
		}
		if pa.pid != pb.pid {
			return pa.pid - pb.pid
		}
		return strings.Compare(a, b)
	})
	hosts := false
	for _, k := range keys {
		hosts = hosts || g.procs[k].host != ""
	}
	host, hostN := "", 0
	for i, k := range keys {
		p := g.procs[k]
		if hosts && (i == 0 || p.host != host) {
			if i > 0 {
				e.printf("\t}\n")
			}
			host, hostN = p.host, hostN+1
			name := p.host
			if name == "" {
				name = "this machine"
			}
			e.printf("\tsubgraph cluster_host%d {\n\t\tlabel=%s; style=solid; color=gray50;\n", hostN, dotLabel("host "+name))
		}
		g.writeProc(e, i, k, p)
	}
	if hosts && len(keys) > 0 {
		e.printf("\t}\n")
	}

	ids := make([]string, 0, len(g.locks))
	for id := range g.locks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		l := g.locks[id]
		lines := []string{l.name}
		var about []string
		if l.kind != "" {
			about = append(about, l.kind)
		}
		if l.state != "" && l.state != "held" {
			about = append(about, l.state)
		}
		if len(about) > 0 {
			lines = append(lines, "("+strings.Join(about, ", ")+")")
		}
		lines = append(lines, l.facts...)
		attrs := "shape=ellipse, style=filled, fillcolor=lightyellow"
		if l.hot != "" {
			attrs += fmt.Sprintf(", color=%s, penwidth=2", l.hot)
		}
		e.printf("\t%s [label=%s, %s];\n", dotQuote(id), dotLabel(lines...), attrs)
	}
	for _, k := range g.order {
		ed := g.edges[k]
		attrs := fmt.Sprintf("label=%s, style=%s", dotQuote(ed.label), ed.style)
		if ed.hot != "" {
			attrs += fmt.Sprintf(", color=%s, fontcolor=%s, penwidth=2.5", ed.hot, ed.hot)
		}
		e.printf("\t%s -> %s [%s];\n", dotQuote(k.from), dotQuote(k.to), attrs)
	}
	e.printf("}\n")
	return e.err
}

// writeProc writes a process's cluster with its goroutines.
func (g *dotGraph) writeProc(e *errWriter, i int, key string, p *dotProc) {
	who := fmt.Sprintf("pid %d", p.pid)
	switch {
	case p.role != "":
		who += " [" + p.role + "]"
	case p.command != "":
		who += " " + truncate(p.command, 40)
	}
	state := p.state
	style, colour := "rounded", "gray30"
	switch {
	case state == Exited:
		style = "\"rounded,dashed\""
	case !p.alive && state != "unknown" && state != "":
		style, colour = "\"rounded,dashed\"", dotDeadlock
		state = strings.ToUpper(state)
	}
	e.printf("\tsubgraph cluster_p%d {\n\t\tlabel=%s; style=%s; color=%s;\n", i, dotLabel(who, state), style, colour)
	gs := make([]int64, 0, len(p.goroutines))
	for id := range p.goroutines {
		gs = append(gs, id)
	}
	slices.Sort(gs)
	for _, id := range gs {
		label := "goroutine " + strconv.FormatInt(id, 10)
		switch id {
		case 0:
			label = "goroutine ?"
		case lockstate.WholeProcess:
			label = "the process" // a kernel file lock's party
		}
		e.printf("\t\t%s [label=%s, shape=box];\n", dotQuote(goroutineNode(key, id)), dotQuote(label))
	}
	e.printf("\t}\n")
}
