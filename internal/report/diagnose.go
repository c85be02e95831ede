package report

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Host tells whether processes live. liveness.System implements it.
type Host interface {
	// Check proves whether id's process is alive: proc.Alive, a proof of
	// death (Gone, Zombie, Reused), or proc.Unknown when the check failed.
	Check(id proc.Identity) (proc.Status, error)
	// Command describes a process that wrote no info file ("" if unknown).
	Command(pid int) string
}

// batchHost is a Host that checks many processes at once, as Check would
// (liveness.System), with proc.Unknown for a failed check.
type batchHost interface {
	CheckAll(ids []proc.Identity) map[proc.Identity]proc.Status
}

// Stacks fetches live stacks from a process's probe. Calls must return
// when ctx ends.
type Stacks interface {
	// Profile returns the process's goroutine profile (cheap). Goroutines
	// waiting for a registry lock carry the pprof label WaitLabel.
	Profile(ctx context.Context, id proc.Identity) (*stackdump.Profile, error)
	// Text returns the process's text dump, with goroutine ids and states;
	// it stops the process's world for a moment.
	Text(ctx context.Context, id proc.Identity) (*stackdump.Snapshot, error)
}

// WaitLabel is the pprof label the probe puts on goroutines waiting in a
// lock's slow path; its value is the lock's name.
const WaitLabel = "lockwatch.wait"

// Sources are where a diagnosis reads from.
type Sources struct {
	Host   Host   // required
	Stacks Stacks // nil: no live stacks
	// Read reads a run's snapshot; nil means lockreg.ReadSnapshot.
	Read func(dir string) (*lockreg.Snapshot, error)
}

// confirmRounds bounds the extra snapshots read to confirm findings.
const confirmRounds = 3

// Diagnose reads the run in dir and reports on it. Findings are confirmed
// by a second snapshot (see the package comment). The error is lockreg's
// when the run cannot be read (an *lockreg.ArenaError, or an
// *fs.PathError).
func Diagnose(ctx context.Context, dir string, src Sources, opts Options) (*Report, error) {
	read := src.Read
	if read == nil {
		read = lockreg.ReadSnapshot
	}
	opts = opts.withDefaults()
	s, err := read(dir)
	if err != nil {
		return nil, err
	}
	g := newGraph(s, checkAll(src.Host, s), opts)
	fs := g.findings()
	for round := 0; round < confirmRounds && unconfirmed(fs); round++ {
		s2, err := read(dir)
		if err != nil {
			return nil, err
		}
		g = newGraph(s2, checkAll(src.Host, s2), opts)
		fs2 := g.findings()
		fs = confirm(fs, fs2)
		if len(fs) == len(fs2) {
			break
		}
		if round < confirmRounds-1 {
			fs = fs2 // try to confirm the new ones with the next snapshot
		}
	}
	if unconfirmed(fs) {
		fs = confirmedOnly(fs)
	}
	return build(ctx, g, fs, src, opts), nil
}

// unconfirmed reports whether fs holds findings not yet seen twice.
func unconfirmed(fs []Finding) bool {
	for _, f := range fs {
		if !f.OwnerDied && f.key != "" {
			return true
		}
	}
	return false
}

func confirmedOnly(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.OwnerDied || f.key == "" {
			out = append(out, f)
		}
	}
	return out
}

// confirm returns the findings of now that were in before too, and those a
// kernel fact confirms; they are marked confirmed (an empty key).
func confirm(before, now []Finding) []Finding {
	seen := make(map[string]bool, len(before))
	for _, f := range before {
		seen[f.key] = true
	}
	out := []Finding{}
	for _, f := range now {
		if f.OwnerDied || seen[f.key] {
			f.key = ""
			out = append(out, f)
		}
	}
	return out
}

// checkAll checks every identity the snapshot names. It runs after the
// snapshot was read, so a holder found dead died holding the lock, unless
// it released it in between: the confirming snapshot rules that out.
func checkAll(h Host, s *lockreg.Snapshot) map[proc.Identity]proc.Status {
	if b, ok := h.(batchHost); ok {
		// One call for all: liveness.System reads the process table once
		// for all the processes it must look up there.
		return b.CheckAll(identities(s))
	}
	out := make(map[proc.Identity]proc.Status)
	for _, id := range identities(s) {
		st, err := h.Check(id)
		if err != nil {
			st = proc.Unknown
		}
		out[id] = st
	}
	return out
}

// build makes the report of a snapshot and its confirmed findings.
func build(ctx context.Context, g *graph, fs []Finding, src Sources, opts Options) *Report {
	s := g.s
	r := &Report{Schema: Schema, Run: s.Dir, Taken: s.Taken, Findings: fs,
		Locks: []LockRow{}, Waiters: []WaiterRow{}, Processes: []ProcRow{}, Events: []EventRow{},
		Stacks: []StackRow{}, Notes: []string{}}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	for i := range s.Locks {
		l := &s.Locks[i]
		row := LockRow{Name: l.Name, State: "free", Word: l.Word, Waiting: l.Waiting, OwnerDied: l.OwnerDied}
		if h, ok := holderOf(s, l); ok {
			p := g.party(h.id, h.g, h.since, h.stack)
			row.Holder, row.State = &p, "held"
		}
		if l.OwnerDied {
			row.State = "owner-died"
		}
		r.Locks = append(r.Locks, row)
	}
	for _, w := range s.Waiters {
		r.Waiters = append(r.Waiters, WaiterRow{Party: g.party(w.Identity(), w.Goroutine, w.Since, w.Stack), Lock: w.LockName})
	}
	for _, p := range s.Processes {
		st := g.statusOf(p.Identity())
		row := ProcRow{PID: p.PID, Start: p.Start, Alive: st == proc.Alive, State: st.String(), Started: p.Registered, Robust: p.Robust}
		if p.Info != nil {
			row.Role, row.Command = p.Info.Role, strings.Join(p.Info.Args, " ")
		} else if st == proc.Alive && src.Host != nil {
			row.Command = src.Host.Command(p.PID)
		}
		switch {
		case p.State == lockreg.ProcExited:
			row.Exit, row.ExitedAt = "closed", p.Exited
		case st.Dead():
			row.Exit = "died"
		}
		r.Processes = append(r.Processes, row)
	}
	involved := make(map[string]bool)
	for _, f := range fs {
		involved[f.Lock] = true
		for _, st := range f.Cycle {
			involved[st.WaitsFor] = true
		}
	}
	perLock := make(map[string]int)
	for i := len(s.Events) - 1; i >= 0; i-- {
		e := s.Events[i]
		if !involved[e.LockName] || perLock[e.LockName] >= opts.Events {
			continue
		}
		perLock[e.LockName]++
		r.Events = append(r.Events, EventRow{Seq: e.Seq, Time: e.Time, Kind: e.Kind.String(), Lock: e.LockName, PID: e.PID, Goroutine: e.Goroutine})
	}
	sort.Slice(r.Events, func(i, j int) bool { return r.Events[i].Seq < r.Events[j].Seq })
	if s.Torn > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d records were left out: they stayed mid-write (a process died writing them)", s.Torn))
	}
	stacks(ctx, g, r, src.Stacks, opts)
	return r
}

// stacks adds the stacks of the goroutines the findings involve: a dead
// holder's acquire stack from its stack dictionary, live waiters from their
// probe's goroutine profile (or, if it does not answer, the wait sites they
// recorded), a stuck holder from its probe's text dump.
func stacks(ctx context.Context, g *graph, r *Report, src Stacks, opts Options) {
	s := g.s
	type want struct {
		locks map[string]bool     // waiters of these locks
		stuck map[int64]string    // holder goroutine -> lock
		waits []lockreg.Waiter    // their records, for the fallback
		prof  *stackdump.Profile  // answers
		text  *stackdump.Snapshot //
		err   error               //
		id    proc.Identity       //
		cause map[string]bool     // dedupe of waiter records
	}
	wants := make(map[proc.Identity]*want)
	get := func(id proc.Identity) *want {
		w := wants[id]
		if w == nil {
			w = &want{locks: map[string]bool{}, stuck: map[int64]string{}, id: id, cause: map[string]bool{}}
			wants[id] = w
		}
		return w
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		// The holder's acquire stack, from its dictionary: a dead holder
		// has no other; a stuck holder's live stack comes from its probe
		// below, when it answers, and this one says where it took the lock.
		if f.Holder != nil && (f.Kind == DeadHolder || f.Kind == StuckHolder || !f.Holder.Alive) {
			id := proc.Identity{PID: f.Holder.PID, Start: f.Holder.Start}
			if h, ok := holderOf(s, &s.Locks[g.lockIndexByName(f.Lock)]); ok {
				if fr, ok := s.Stack(id, h.stack); ok {
					r.Stacks = append(r.Stacks, StackRow{PID: id.PID, Lock: f.Lock, Role: "holder", Source: "dictionary",
						Count: 1, Goroutines: []int64{h.g}, State: f.Holder.State, Frames: framesOf(fr)})
				}
			}
		}
		if f.Kind == StuckHolder {
			get(proc.Identity{PID: f.Holder.PID, Start: f.Holder.Start}).stuck[f.Holder.Goroutine] = f.Lock
		}
		parties := f.Waiters
		for _, st := range f.Cycle {
			parties = append(parties, st.Party)
		}
		for _, p := range parties {
			if !p.Alive && f.Kind != StaleWaiter {
				continue
			}
			id := proc.Identity{PID: p.PID, Start: p.Start}
			if wi, ok := g.waitsFor[goroutine{id, p.Goroutine}]; ok {
				w := get(id)
				w.locks[s.Waiters[wi].LockName] = true
				if k := fmt.Sprint(wi); !w.cause[k] {
					w.cause[k] = true
					w.waits = append(w.waits, s.Waiters[wi])
				}
				if !p.Alive {
					w.err = errDead // a dead waiter's probe cannot answer
				}
			}
		}
	}
	ids := make([]proc.Identity, 0, len(wants))
	for id := range wants {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].PID < ids[j].PID })
	if src != nil {
		var wg sync.WaitGroup
		for _, id := range ids {
			w := wants[id]
			if w.err != nil {
				continue
			}
			wg.Go(func() {
				c, cancel := context.WithTimeout(ctx, opts.ProbeTimeout)
				defer cancel()
				if len(w.stuck) > 0 {
					w.text, w.err = src.Text(c, id)
				} else {
					w.prof, w.err = src.Profile(c, id)
				}
			})
		}
		wg.Wait()
	}
	for _, id := range ids {
		w := wants[id]
		switch {
		case w.text != nil:
			for gid, lock := range w.stuck {
				if gr, ok := w.text.Goroutine(gid); ok {
					r.Stacks = append(r.Stacks, StackRow{PID: id.PID, Lock: lock, Role: "holder", Source: "probe-text",
						Count: 1, Goroutines: []int64{gid}, State: gr.State, Frames: framesOf(gr.Frames)})
					r.setDoing(id, gid, gr)
				}
			}
			var gs []stackdump.Goroutine
			for _, wt := range w.waits {
				if gr, ok := w.text.Goroutine(wt.Goroutine); ok {
					gs = append(gs, gr)
				}
			}
			for _, grp := range stackdump.GroupGoroutines(gs, stackdump.IgnoreArgs) {
				r.Stacks = append(r.Stacks, StackRow{PID: id.PID, Lock: lockOf(w.waits, grp.IDs), Role: "waiter", Source: "probe-text",
					Count: grp.Count, Goroutines: grp.IDs, State: topState(grp), Frames: framesOf(grp.Frames)})
			}
		case w.prof != nil:
			byLock := make(map[string][]stackdump.Sample)
			for _, sm := range w.prof.Samples {
				if l := sm.Labels[WaitLabel]; w.locks[l] {
					byLock[l] = append(byLock[l], sm)
				}
			}
			if len(byLock) == 0 {
				r.recorded(g, id, w.waits)
			}
			for _, l := range sortedKeys(byLock) {
				for _, grp := range stackdump.GroupSamples(byLock[l]) {
					r.Stacks = append(r.Stacks, StackRow{PID: id.PID, Lock: l, Role: "waiter", Source: "probe", Count: grp.Count, Frames: framesOf(grp.Frames)})
				}
			}
		default:
			if w.err != nil && !errors.Is(w.err, errDead) {
				r.Notes = append(r.Notes, fmt.Sprintf("the probe of pid %d did not answer (%v): its stacks are from the arena only", id.PID, w.err))
			} else if src == nil && w.err == nil {
				r.Notes = append(r.Notes, fmt.Sprintf("pid %d's probe was not asked: its stacks are from the arena only", id.PID))
			}
			r.recorded(g, id, w.waits)
		}
	}
}

var errDead = errors.New("dead")

// recorded adds the wait sites that waiter records name, grouped.
func (r *Report) recorded(g *graph, id proc.Identity, waits []lockreg.Waiter) {
	type key struct {
		stack uint64
		lock  string
	}
	groups := make(map[key][]int64)
	var order []key
	for _, w := range waits {
		k := key{w.Stack, w.LockName}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], w.Goroutine)
	}
	for _, k := range order {
		fr, ok := g.s.Stack(id, k.stack)
		if !ok {
			continue
		}
		gs := groups[k]
		sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
		r.Stacks = append(r.Stacks, StackRow{PID: id.PID, Lock: k.lock, Role: "waiter", Source: "dictionary",
			Count: int64(len(gs)), Goroutines: gs, Frames: framesOf(fr)})
	}
}

func (r *Report) setDoing(id proc.Identity, gid int64, gr stackdump.Goroutine) {
	var top []string
	for _, f := range gr.Frames {
		top = append(top, f.Func)
		if len(top) == 3 {
			break
		}
	}
	doing := gr.State + " in " + strings.Join(top, " < ")
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Kind == StuckHolder && f.Holder.PID == id.PID && f.Holder.Goroutine == gid {
			f.Doing = doing
		}
	}
}

func (g *graph) lockIndexByName(name string) int {
	for i, l := range g.s.Locks {
		if l.Name == name {
			return i
		}
	}
	return 0
}

func lockOf(waits []lockreg.Waiter, ids []int64) string {
	for _, w := range waits {
		for _, id := range ids {
			if w.Goroutine == id {
				return w.LockName
			}
		}
	}
	return ""
}

func topState(g stackdump.Group) string {
	if len(g.States) > 0 {
		return g.States[0].State
	}
	return ""
}

// Since returns how long ago t was, as of the report.
func (r *Report) Since(t time.Time) time.Duration { return r.Taken.Sub(t) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
