// Package goprocsrc presents a Go process read from its memory (package
// goproc: no probe, nothing prepared in it) to the diagnosis: the
// sync.Mutex and sync.RWMutex its goroutines wait for, with the holders
// inferred from evidence and labelled so (lockstate.Holder.Inferred), and
// every goroutine's stack as the stack resolver.
//
//	src, err := goprocsrc.Attach(pid, goproc.Options{})
//	defer src.Close()
//	r, err := report.Diagnose(ctx, report.Sources{Locks: []lockstate.Source{src}, Host: liveness.System{}}, report.Options{})
package goprocsrc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// A Source reads one Go process's sync waits from its memory. It is safe
// for concurrent use (reads are serialized).
type Source struct {
	mu sync.Mutex
	p  *goproc.Process
	id procid.ID
	// core is the core file read, "" for a live process.
	core string
	// Skip, when set, names the lock addresses to leave out: locks read
	// exactly by another source of the same report (the drop-in's records
	// of a mutex that wraps a sync.Mutex at its own address).
	Skip func(addr uint64) bool
	// last is the image of the last Read, for the live stacks (Stacks).
	last *goproc.Image
}

// Attach opens the live process pid. Its errors are goproc's one-line
// errors (not Go, permission, an unknown release).
func Attach(pid int, opts goproc.Options) (*Source, error) {
	p, err := goproc.Attach(pid, opts)
	if err != nil {
		return nil, err
	}
	return &Source{p: p, id: procid.ID{PID: pid, Start: p.Start()}}, nil
}

// OpenCore opens a core file of a Go program (with its binary: exe, or
// the path the core names).
func OpenCore(path, exe string) (*Source, error) {
	p, err := goproc.OpenCore(path, goproc.Options{Exe: exe})
	if err != nil {
		return nil, err
	}
	return &Source{p: p, id: procid.ID{PID: p.PID}, core: path}, nil
}

// Close closes the process's files.
func (s *Source) Close() error { return s.p.Close() }

// ID is the process read.
func (s *Source) ID() procid.ID { return s.id }

// Process is the goproc process read.
func (s *Source) Process() *goproc.Process { return s.p }

// Image reads the process once.
func (s *Source) Image(ctx context.Context) (*goproc.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Read(ctx)
}

// Read reads the process's waits on sync locks.
func (s *Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	img, err := s.Image(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.last = img
	s.mu.Unlock()
	if s.Skip != nil {
		kept := *img
		kept.Locks = slices.DeleteFunc(slices.Clone(img.Locks), func(l goproc.Lock) bool { return s.Skip(l.Addr) })
		img = &kept
	}
	hint := fmt.Sprint(s.id.PID)
	if s.core != "" {
		hint = s.core
	}
	snap := Snapshot(s.id, s.p.Binary, img, hint)
	if s.core != "" {
		// As of the core: its process was alive when it was written, and
		// is not asked about now.
		snap.Run = "core " + s.core
		snap.Processes[0].Status = procid.Alive
		snap.Processes[0].Command = s.p.Binary.Path
		snap.Notes = append(snap.Notes, fmt.Sprintf("read from the core file %s (written %s), with the binary %s: the process is shown as it was then", s.core, img.Taken.Format("2006-01-02 15:04:05"), s.p.Binary.Path))
	}
	return snap, nil
}

// Lock kinds: the standard library's locks, read from memory.
const (
	KindMutex   = "sync.Mutex"
	KindRWMutex = "sync.RWMutex"
)

// WaitNote says what a waiting time read from memory is.
const WaitNote = "waiting times of goroutines read from memory are lower bounds: the runtime notes when a goroutine was first seen blocked only when a garbage collection starts (g.waitsince), and '-' means none has started since it blocked"

// Snapshot turns an image of process id into the model; arg is what
// 'lockwatch stacks' is to be given to show the rest of its goroutines.
func Snapshot(id procid.ID, b *goproc.Binary, img *goproc.Image, arg string) *lockstate.Snapshot {
	snap := &lockstate.Snapshot{
		Run:       fmt.Sprintf("pid %d", id.PID),
		Taken:     img.Taken,
		Processes: []lockstate.Process{{ID: id}},
		Notes:     slices.Clone(img.Notes),
	}
	stacks := resolver{id: id, frames: map[uint64][]stackdump.Frame{}}
	byID := map[int64]*goproc.Goroutine{}
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		byID[g.ID] = g
	}
	stackOf := func(gid int64) uint64 {
		g := byID[gid]
		if g == nil || len(g.Frames) == 0 {
			return 0
		}
		if _, ok := stacks.frames[uint64(gid)]; !ok {
			stacks.frames[uint64(gid)] = Frames(g.Frames)
		}
		return uint64(gid)
	}
	others := map[string]int{}
	waitUnknown := false
	for _, l := range img.Locks {
		if l.Kind != KindMutex && l.Kind != KindRWMutex {
			others[l.Kind] += len(l.Waiters)
			continue
		}
		name := l.Name
		if name == "" {
			name = fmt.Sprintf("%#x", l.Addr)
		}
		lk := lockstate.Lock{Kind: l.Kind, Name: name}
		lk.Facts.Extra = append(lk.Facts.Extra, lockstate.Fact{Name: "address", Value: fmt.Sprintf("%#x", l.Addr)})
		if l.State != "" {
			lk.Facts.Extra = append(lk.Facts.Extra, lockstate.Fact{Name: "state", Value: l.State})
		}
		writers, readers := 0, 0
		holders := l.Holders
		if l.DropIn && l.Owner > 0 {
			// Recorded by the drop-in in the mutex itself: exact.
			lk.Holders = append(lk.Holders, holderOf(img, byID, lockstate.Holder{Party: lockstate.Party{ID: id, Goroutine: l.Owner}}))
			writers++
			fact := fmt.Sprintf("goroutine %d", l.Owner)
			if l.OwnerGone {
				fact += " (exited holding it)"
				snap.Notes = append(snap.Notes, fmt.Sprintf("pid %d: goroutine %d exited holding the drop-in mutex %s (its owner word still names it, and no goroutine has that id): only an Unlock by another goroutine (sync allows one to unlock what another locked) can release it", id.PID, l.Owner, name))
			}
			lk.Facts.Extra = append(lk.Facts.Extra, lockstate.Fact{Name: "owner word", Value: fact})
			holders = slices.DeleteFunc(slices.Clone(holders), func(h goproc.Holder) bool { return !h.Read && h.Goroutine == l.Owner })
		}
		for _, h := range holders {
			// No Stack: where it took the lock is not known (its stack
			// says where it is now, which the evidence tells).
			hd := lockstate.Holder{Party: lockstate.Party{ID: id, Goroutine: h.Goroutine}, Read: h.Read, Inferred: h.Evidence}
			if g := byID[h.Goroutine]; g != nil && g.WaitReason != "" {
				hd.Inferred += fmt.Sprintf("; it waits (%s)", State(g))
				if at, ok := callSite(g.Frames); ok {
					hd.Inferred += fmt.Sprintf(" in %s at %s:%d", at.Func, filepath.Base(at.File), at.Line)
				}
			}
			lk.Holders = append(lk.Holders, holderOf(img, byID, hd))
			if h.Read {
				readers++
			} else {
				writers++
			}
		}
		// Held by someone the evidence does not name: a holder with no
		// goroutine (never part of a cycle).
		switch {
		case l.Kind == KindMutex && l.Locked && writers == 0,
			l.Kind == KindRWMutex && l.WriterHolds && writers == 0:
			lk.Holders = append(lk.Holders, lockstate.Holder{Party: lockstate.Party{ID: id}})
		case l.Kind == KindRWMutex && l.ReadersHolding > readers:
			lk.Holders = append(lk.Holders, lockstate.Holder{Party: lockstate.Party{ID: id}, Read: true})
		}
		for _, w := range l.Waiters {
			g := byID[w.Goroutine]
			wt := lockstate.Waiter{Party: lockstate.Party{ID: id, Goroutine: w.Goroutine}, Read: w.Read, Stack: stackOf(w.Goroutine)}
			if g != nil && g.WaitKnown && g.WaitingAtLeast > 0 {
				wt.Since = img.Taken.Add(-g.WaitingAtLeast)
			} else {
				waitUnknown = true
			}
			lk.Waiters = append(lk.Waiters, wt)
		}
		// Longest-waiting first; unknown waits last.
		sort.SliceStable(lk.Waiters, func(i, j int) bool {
			a, b := lk.Waiters[i].Since, lk.Waiters[j].Since
			return !a.IsZero() && (b.IsZero() || a.Before(b))
		})
		snap.Locks = append(snap.Locks, lk)
	}
	if len(snap.Locks) > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("pid %d has no probe: its locks were read from its memory (%s, layout from %s); holders marked inferred are named from evidence (a pending deferred unlock), not recorded; a drop-in mutex's holder is the one its owner word records", id.PID, img.GoVersion, b.LayoutSource))
		if waitUnknown {
			snap.Notes = append(snap.Notes, WaitNote)
		}
	}
	for _, g := range img.Goroutines {
		switch {
		case g.System:
		case strings.HasPrefix(g.WaitReason, "chan "):
			others["chan"]++
		case strings.HasPrefix(g.WaitReason, "select"):
			others["select"]++
		}
	}
	if len(others) > 0 {
		var parts []string
		for _, k := range sortedKeys(others) {
			parts = append(parts, fmt.Sprintf("%d on a %s", others[k], k))
		}
		snap.Notes = append(snap.Notes, fmt.Sprintf("pid %d also has goroutines blocked elsewhere (%s): 'lockwatch stacks %s' shows them", id.PID, strings.Join(parts, ", "), arg))
	}
	snap.Stacks = stacks
	return snap
}

// holderOf completes holder hd of a lock: blocked holding it (on anything
// but another sync object: a chain, not its end), it has held it at least
// as long as the runtime has seen it blocked.
func holderOf(img *goproc.Image, byID map[int64]*goproc.Goroutine, hd lockstate.Holder) lockstate.Holder {
	if g := byID[hd.Goroutine]; g != nil && g.WaitReason != "" && g.Waits == nil && g.WaitKnown && g.WaitingAtLeast > 0 {
		hd.Since = img.Taken.Add(-g.WaitingAtLeast)
	}
	return hd
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Frames are a goroutine's frames as a traceback prints them by default:
// the runtime's own functions left out.
func Frames(fs []goproc.Frame) []stackdump.Frame {
	out := make([]stackdump.Frame, 0, len(fs))
	for _, f := range fs {
		if goproc.Hidden(f.Func) {
			continue
		}
		out = append(out, stackdump.Frame{Func: f.Func, File: f.File, Line: f.Line})
	}
	return out
}

// callSite is a goroutine's innermost frame of the program's own code.
func callSite(fs []goproc.Frame) (goproc.Frame, bool) {
	for _, f := range fs {
		if !goproc.Hidden(f.Func) && !strings.HasPrefix(f.Func, "sync.") && !strings.HasPrefix(f.Func, "internal/") &&
			!strings.HasPrefix(f.Func, "github.com/lockwatch/lockwatch/sync.") {
			return f, true
		}
	}
	return goproc.Frame{}, false
}

// resolver gives each goroutine's stack as read (stack id = goroutine id).
type resolver struct {
	id     procid.ID
	frames map[uint64][]stackdump.Frame
}

func (r resolver) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) {
	if p != r.id {
		return nil, false
	}
	f, ok := r.frames[id]
	return f, ok
}

// StackSource names where the stacks come from, for the report's stack
// rows.
func (resolver) StackSource() string { return "memory" }

// State is a goroutine's state as a traceback prints it, with the
// channels it waits for when they were read: "chan receive on
// 0xc000100060", "select on 0xc000100060, 0xc0001000c0".
func State(g *goproc.Goroutine) string {
	s := g.Status
	if g.WaitReason != "" {
		s = g.WaitReason
	}
	if len(g.Chans) == 0 {
		return s
	}
	const show = 4
	var as []string
	for _, c := range g.Chans[:min(len(g.Chans), show)] {
		as = append(as, fmt.Sprintf("%#x", c))
	}
	s += " on " + strings.Join(as, ", ")
	if n := len(g.Chans) - show; n > 0 {
		s += fmt.Sprintf(" and %d more", n)
	}
	return s
}

// Goroutines converts an image to stackdump's model (for lockwatch stacks):
// every goroutine, with its state as a traceback prints it (goroutines
// with one stack group together, whichever channel each waits on).
func Goroutines(img *goproc.Image) *stackdump.Snapshot { return goroutines(img, false, nil) }

// goroutines converts an image, only the goroutines keep keeps when it is
// not nil; chans adds the channels each waits for to its state (State).
func goroutines(img *goproc.Image, chans bool, keep func(id int64) bool) *stackdump.Snapshot {
	s := &stackdump.Snapshot{PID: img.PID, Time: img.Taken}
	for _, g := range img.Goroutines {
		if g.System || keep != nil && !keep(g.ID) {
			continue
		}
		state := g.Status
		if g.WaitReason != "" {
			state = g.WaitReason
		}
		if chans {
			state = State(&g)
		}
		sg := stackdump.Goroutine{ID: g.ID, State: state, Frames: Frames(g.Frames), StackUnavailable: g.Status == goproc.StateRunning}
		if g.WaitKnown && g.WaitingAtLeast >= time.Minute {
			sg.Wait = g.WaitingAtLeast.Truncate(time.Minute)
		}
		if g.CreatedBy != nil && !goproc.Hidden(g.CreatedBy.Func) {
			sg.CreatedBy = &stackdump.Frame{Func: g.CreatedBy.Func, File: g.CreatedBy.File, Line: g.CreatedBy.Line}
			sg.CreatorID = g.Creator
		}
		s.Goroutines = append(s.Goroutines, sg)
	}
	return s
}

// Stacks returns the live stacks of the process as its last Read found
// them (report.Stacks): the goroutines a report asks for, read from memory
// with the locks, so that a stuck holder's current stack is shown as a
// probe's would be.
func (s *Source) Stacks() *Stacks { return &Stacks{s: s} }

// Stacks answers a report's requests for live stacks from the image of the
// Source's last Read. It never asks the process anything.
type Stacks struct{ s *Source }

// errNoImage is Stacks' answer before any Read, or for another process.
var errNoImage = errors.New("not read from memory")

func (st *Stacks) image(id procid.ID) (*goproc.Image, error) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	if id != st.s.id || st.s.last == nil {
		return nil, errNoImage
	}
	return st.s.last, nil
}

// Goroutines returns the goroutines named, from memory, each blocked on
// channels with their addresses in its state (State).
func (st *Stacks) Goroutines(_ context.Context, id procid.ID, ids []int64) (*stackdump.Snapshot, error) {
	img, err := st.image(id)
	if err != nil {
		return nil, err
	}
	want := make(map[int64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	return goroutines(img, true, func(id int64) bool { return want[id] }), nil
}

// Text returns every goroutine, from memory (nothing is stopped).
func (st *Stacks) Text(_ context.Context, id procid.ID) (*stackdump.Snapshot, error) {
	img, err := st.image(id)
	if err != nil {
		return nil, err
	}
	return Goroutines(img), nil
}

// Profile is empty: a goroutine profile is matched to waiters by a pprof
// label that memory does not give; the waiters' stacks are their
// locks' own (read from memory, or recorded by the drop-in).
func (st *Stacks) Profile(_ context.Context, id procid.ID) (*stackdump.Profile, error) {
	img, err := st.image(id)
	if err != nil {
		return nil, err
	}
	return &stackdump.Profile{Time: img.Taken}, nil
}

// SourceOf names where the live stacks come from.
func (*Stacks) SourceOf(procid.ID) string { return "memory" }
