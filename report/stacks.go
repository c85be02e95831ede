package report

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// stacks adds the stacks of the goroutines the findings involve, in four
// steps: the holders' recorded acquire stacks (a dead holder has no
// other); what to ask each process's probe for; the asking, at most
// ProbeConcurrency probes at once, each within ProbeTimeout; and the
// answers, or, for a process that did not answer, the wait sites its
// waiters recorded.
func stacks(ctx context.Context, g *graph, r *Report, src Stacks, remote bool, opts Options) {
	r.holderStacks()
	wants, ids := plan(g, r, remote)
	if src != nil {
		if w := wants[opts.First]; w != nil {
			w.rank = -1 // named by the user
		}
		if asked, left := bound(wants, opts.LiveStacks); left > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("live stacks were asked of %d of the %d processes involved (--live-stacks=%d; stuck holders' processes first, in the findings' order): the stacks of the other %d are those their records hold, where each goroutine took or began waiting for its lock; --live-stacks=0 asks every process, 'lockwatch attach PID' asks that process first",
				asked, asked+left, opts.LiveStacks, left))
		}
		ask(ctx, src, wants, ids, opts, remote)
	}
	for _, id := range ids {
		r.answer(id, wants[id], src != nil)
	}
}

// Where a stack row's frames came from (StackRow.Source).
const (
	sourceDictionary = "dictionary"  // recorded by the process when it took or began waiting for the lock
	sourceProfile    = "probe"       // the live goroutine profile: no goroutine ids
	sourceTrace      = "probe-trace" // a live execution trace: ids, states, stacks
	sourceText       = "probe-text"  // a live text dump (Options.TextDumps)
)

// want is what the report wants from one process's probe, and its answer.
type want struct {
	stuck map[int64]string // holder goroutine -> the lock it is stuck holding
	waits []wait           // waiter records of the process's involved goroutines
	seen  map[wait]bool    // dedupe of waits

	prof *stackdump.Profile
	// live are goroutines with ids and states, from source (sourceTrace
	// or sourceText); liveErr says why a trace was asked and not had (the
	// profile was asked instead).
	live    *stackdump.Snapshot
	source  string
	liveErr error
	err     error // errDead, errRemote, errBeyondBound: not asked

	// rank orders the processes for Options.LiveStacks: the index of the
	// first finding that names one of its goroutines as a stuck holder,
	// else as a party, counted after every finding's holders.
	rank int
}

// goroutines are the goroutines of the process the report wants the live
// stacks of: its stuck holders and its involved waiters, in id order.
func (w *want) goroutines() []int64 {
	gs := slices.Collect(maps.Keys(w.stuck))
	for _, wt := range w.waits {
		gs = append(gs, wt.w.Goroutine)
	}
	slices.Sort(gs)
	return slices.Compact(gs)
}

var (
	errDead        = errors.New("dead")            // a dead process's probe cannot answer
	errRemote      = errors.New("another machine") // probes answer on this machine only
	errBeyondBound = errors.New("beyond --live-stacks")
)

// whole reports whether every goroutine the report wants of the process
// is the process as a whole (lockstate.WholeProcess: a party of a kernel
// file lock): a goroutine profile has nothing to match them with, so their
// live state is asked for as a stuck holder's is.
func (w *want) whole() bool {
	for _, wt := range w.waits {
		if wt.w.Goroutine != lockstate.WholeProcess {
			return false
		}
	}
	return len(w.waits) > 0
}

// sourceNamer is a Stacks that says where it read a process's live
// goroutines (StackRow.Source) when that is not an execution trace: "proc"
// for a process read from /proc (its threads' kernel stacks).
type sourceNamer interface {
	SourceOf(id procid.ID) string
}

// holderStacks adds the recorded acquire stack of each holder that a
// finding names dead or stuck: a dead holder has no other; a stuck
// holder's live stack comes from its probe, when it answers, and this one
// says where it took the lock.
func (r *Report) holderStacks() {
	for i := range r.Findings {
		f := &r.Findings[i]
		h := f.Holder
		if h == nil || (f.Kind != DeadHolder && f.Kind != StuckHolder && f.Kind != LostLock && h.Alive) {
			continue
		}
		if h.stack.res == nil || h.stack.id == 0 {
			continue
		}
		if fr, ok := h.stack.res.Stack(h.id(), h.stack.id); ok {
			r.Stacks = append(r.Stacks, StackRow{Host: h.Host, PID: h.PID, Lock: f.Lock, Role: "holder", Source: stackSource(h.stack.res),
				Count: 1, Goroutines: []int64{h.Goroutine}, State: h.State, Frames: framesOf(fr)})
		}
	}
}

// plan says what to ask each process's probe for: the live goroutines
// (ids, states, stacks) of a process with a stuck holder, the goroutine
// profile of one with live waiters only. Processes come in pid order.
// Processes of other machines are asked only when remote: Stacks reaches
// them.
func plan(g *graph, r *Report, remote bool) (map[procid.ID]*want, []procid.ID) {
	wants := make(map[procid.ID]*want)
	get := func(id procid.ID, rank int) *want {
		w := wants[id]
		if w == nil {
			w = &want{stuck: map[int64]string{}, seen: map[wait]bool{}, rank: rank}
			if id.Host != "" && !remote {
				w.err = errRemote
			}
			wants[id] = w
		}
		w.rank = min(w.rank, rank)
		return w
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if (f.Kind == StuckHolder || f.Kind == LostLock) && f.Holder.Alive {
			get(f.Holder.id(), i).stuck[f.Holder.Goroutine] = f.Lock
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		parties := slices.Clone(f.Waiters)
		for _, st := range f.Cycle {
			parties = append(parties, st.Party)
		}
		for _, st := range f.Behind {
			parties = append(parties, st.Party)
		}
		for _, p := range parties {
			if !p.Alive && f.Kind != StaleWaiter {
				continue
			}
			ws := g.waits[node{ID: p.id(), Goroutine: p.Goroutine}]
			if len(ws) == 0 {
				continue
			}
			w := get(p.id(), len(r.Findings)+i)
			for _, wt := range ws {
				if !w.seen[wt] {
					w.seen[wt] = true
					w.waits = append(w.waits, wt)
				}
			}
			if !p.Alive {
				w.err = errDead
			}
		}
	}
	ids := make([]procid.ID, 0, len(wants))
	for id := range wants {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b procid.ID) int {
		return compareNodes(node{ID: a}, node{ID: b})
	})
	return wants, ids
}

// bound leaves the processes to ask for live stacks beyond the first limit
// unasked (errBeyondBound), in rank order (ties by pid), unless limit is
// AllLiveStacks; it returns how many are asked and how many were left.
// Processes that cannot be asked anyway (dead, another machine's) do not
// count.
func bound(wants map[procid.ID]*want, limit int) (asked, left int) {
	var ids []procid.ID
	for id, w := range wants {
		if w.err == nil {
			ids = append(ids, id)
		}
	}
	if limit < 0 || len(ids) <= limit {
		return len(ids), 0
	}
	slices.SortFunc(ids, func(a, b procid.ID) int {
		return cmp.Or(wants[a].rank-wants[b].rank, compareNodes(node{ID: a}, node{ID: b}))
	})
	for _, id := range ids[limit:] {
		wants[id].err = errBeyondBound
	}
	return limit, len(ids) - limit
}

// ask asks the probes, at most opts.ProbeConcurrency at once, each within
// opts.ProbeTimeout from when it is asked.
func ask(ctx context.Context, src Stacks, wants map[procid.ID]*want, ids []procid.ID, opts Options, remote bool) {
	slots := make(chan struct{}, max(opts.ProbeConcurrency, 1))
	var wg sync.WaitGroup
	for _, id := range ids {
		w := wants[id]
		if w.err != nil {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			w.err = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			w.ask(ctx, src, id, opts, remote)
		})
	}
	wg.Wait()
}

// ask asks one probe: for the live goroutines the report names when a
// holder of the process is stuck (what it does now), else, or if those
// could not be had, for its goroutine profile.
func (w *want) ask(ctx context.Context, src Stacks, id procid.ID, opts Options, remote bool) {
	if remote {
		// A remote Stacks (Sources.Remote) answers with text dumps only,
		// for waiters too.
		c, cancel := context.WithTimeout(ctx, opts.ProbeTimeout)
		defer cancel()
		w.live, w.err = src.Text(c, id)
		w.source = sourceText
		return
	}
	if len(w.stuck) > 0 || w.whole() {
		c, cancel := context.WithTimeout(ctx, opts.ProbeTimeout)
		if opts.TextDumps {
			w.live, w.err = src.Text(c, id)
			w.source = sourceText
			cancel()
			return
		}
		w.live, w.liveErr = src.Goroutines(c, id, w.goroutines())
		cancel()
		if w.liveErr == nil {
			w.source = sourceTrace
			if n, ok := src.(sourceNamer); ok {
				w.source = cmp.Or(n.SourceOf(id), sourceTrace)
			}
			return
		}
		w.live = nil
	}
	c, cancel := context.WithTimeout(ctx, opts.ProbeTimeout)
	defer cancel()
	w.prof, w.err = src.Profile(c, id)
}

// answer adds the stacks of one process: from its probe's answer, or from
// the records.
func (r *Report) answer(id procid.ID, w *want, asked bool) {
	if w.liveErr != nil && len(w.stuck) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("pid %d's live goroutines could not be read (%v): its stuck holder's live stack is missing; 'lockwatch stacks --text %d' takes a text dump (it stops the process for the whole dump)", id.PID, w.liveErr, id.PID))
	}
	switch {
	case w.live != nil:
		r.liveStacks(id, w)
	case w.prof != nil:
		if !r.profileStacks(id, w) {
			r.recorded(id, w.waits)
		}
	default:
		switch {
		case errors.Is(w.err, errBeyondBound):
			// Said once for all of them, by stacks.
		case errors.Is(w.err, errRemote):
			r.Notes = append(r.Notes, fmt.Sprintf("pid %d is on %s, where no probe can be asked: its stacks are from the records only", id.PID, id.Host))
		case w.err != nil && !errors.Is(w.err, errDead):
			r.Notes = append(r.Notes, fmt.Sprintf("the probe of pid %d did not answer (%v): its stacks are from the arena only", id.PID, w.err))
		case !asked && w.err == nil && !fromMemory(w.waits):
			r.Notes = append(r.Notes, fmt.Sprintf("pid %d's probe was not asked: its stacks are from the arena only", id.PID))
		}
		r.recorded(id, w.waits)
	}
}

// liveStacks adds a stuck holder's live stack and the waiters' stacks,
// grouped, from goroutines with ids (a trace, a text dump). A waiter the
// answer does not have (it was running when the trace was taken) is
// shown from its record; a stuck holder it does not have, said in a note.
func (r *Report) liveStacks(id procid.ID, w *want) {
	for _, gid := range slices.Sorted(maps.Keys(w.stuck)) {
		lock := w.stuck[gid]
		gr, ok := w.live.Goroutine(gid)
		if !ok {
			r.Notes = append(r.Notes, fmt.Sprintf("pid %d goroutine %d, stuck holding %q, was running or had ended when its stacks were read (%s): its live stack is missing",
				id.PID, gid, lock, w.source))
			continue
		}
		r.Stacks = append(r.Stacks, StackRow{Host: id.Host, PID: id.PID, Lock: lock, Role: "holder", Source: w.source,
			Count: 1, Goroutines: []int64{gid}, State: gr.State, Frames: framesOf(gr.Frames)})
		r.setDoing(id, gid, gr)
	}
	var gs []stackdump.Goroutine
	var missing []wait
	for _, wt := range w.waits {
		if gr, ok := w.live.Goroutine(wt.w.Goroutine); ok {
			gs = append(gs, gr)
		} else {
			missing = append(missing, wt)
		}
	}
	for _, grp := range stackdump.GroupGoroutines(gs, stackdump.IgnoreArgs) {
		r.Stacks = append(r.Stacks, StackRow{Host: id.Host, PID: id.PID, Lock: lockOf(w.waits, grp.IDs), Role: "waiter", Source: w.source,
			Count: grp.Count, Goroutines: grp.IDs, State: topState(grp), Frames: framesOf(grp.Frames)})
	}
	r.recorded(id, missing)
}

// profileStacks adds the waiters' stacks from a goroutine profile: the
// samples that carry a wait label naming a lock they wait for. It reports
// whether any did.
func (r *Report) profileStacks(id procid.ID, w *want) bool {
	byLock := make(map[string][]stackdump.Sample)
	for _, sm := range w.prof.Samples {
		for _, wt := range w.waits {
			if wt.l.label != "" && sm.Labels[wt.l.label] == wt.l.Name {
				byLock[wt.l.Name] = append(byLock[wt.l.Name], sm)
				break
			}
		}
	}
	for _, l := range slices.Sorted(maps.Keys(byLock)) {
		for _, grp := range stackdump.GroupSamples(byLock[l]) {
			r.Stacks = append(r.Stacks, StackRow{Host: id.Host, PID: id.PID, Lock: l, Role: "waiter", Source: sourceProfile, Count: grp.Count, Frames: framesOf(grp.Frames)})
		}
	}
	return len(byLock) > 0
}

// recorded adds the wait sites that waiter records name, grouped.
func (r *Report) recorded(id procid.ID, waits []wait) {
	type key struct {
		l     *lock
		stack uint64
	}
	groups := make(map[key][]int64)
	var order []key
	for _, w := range waits {
		k := key{w.l, w.w.Stack}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], w.w.Goroutine)
	}
	for _, k := range order {
		if k.l.res == nil || k.stack == 0 {
			continue
		}
		fr, ok := k.l.res.Stack(id, k.stack)
		if !ok {
			continue
		}
		gs := groups[k]
		slices.Sort(gs)
		r.Stacks = append(r.Stacks, StackRow{Host: id.Host, PID: id.PID, Lock: k.l.Name, Role: "waiter", Source: stackSource(k.l.res),
			Count: int64(len(gs)), Goroutines: gs, Frames: framesOf(fr)})
	}
}

// stackSource is where a resolver's stacks come from: what it says (a
// StackSource() string method: "memory", for stacks read from a process's
// memory as it is now), else the records' dictionary.
func stackSource(res any) string {
	if s, ok := res.(interface{ StackSource() string }); ok {
		return s.StackSource()
	}
	return sourceDictionary
}

// fromMemory reports whether every wait's stacks are read from the
// process's memory: they are live, and no probe is missed.
func fromMemory(waits []wait) bool {
	for _, w := range waits {
		if stackSource(w.l.res) == sourceDictionary {
			return false
		}
	}
	return len(waits) > 0
}

// setDoing says, in the stuck holder's finding, what its goroutine does.
func (r *Report) setDoing(id procid.ID, gid int64, gr stackdump.Goroutine) {
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
		if (f.Kind == StuckHolder || f.Kind == LostLock) && f.Holder.id() == id && f.Holder.Goroutine == gid {
			f.Doing = doing
		}
	}
}

func lockOf(waits []wait, ids []int64) string {
	for _, w := range waits {
		if slices.Contains(ids, w.w.Goroutine) {
			return w.l.Name
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

// machinery is the code between a program's call and the lock: frames in it
// are skipped to find the call site.
var machinery = []string{
	"github.com/lockwatch/lockwatch/lockreg.",
	"github.com/lockwatch/lockwatch/probe.",
	"github.com/lockwatch/lockwatch/stackdump.",
	"github.com/lockwatch/lockwatch/sync.",
	"runtime.",
	"internal/",
	"sync.",
	"syscall.",
	"golang.org/x/sys/",
}

func isMachinery(fn string) bool {
	for _, p := range machinery {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// callSite returns the innermost frame of a program's own code: where it
// called into the lock.
func callSite(fs []stackdump.Frame) (stackdump.Frame, bool) {
	for _, f := range fs {
		if !isMachinery(f.Func) {
			return f, true
		}
	}
	if len(fs) > 0 {
		return fs[0], true
	}
	return stackdump.Frame{}, false
}
