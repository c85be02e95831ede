package filelocksrc

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Threads reads what a process that takes part in a file lock is doing
// now, from /proc, for a process in any language: the state of the thread
// that tells most (one blocked taking a file lock, else the main thread),
// its kernel stack (/proc/PID/task/TID/stack, readable by root only) or else
// the kernel function it sleeps in (wchan). Its Goroutines answers for the
// process as a whole (lockstate.WholeProcess), as the report asks a probe
// for goroutines. Its zero value reads /proc.
type Threads struct {
	Proc string // where procfs is mounted; "" is /proc
}

// SourceOf names where the answers come from, for the report's stacks.
func (Threads) SourceOf(procid.ID) string { return "proc" }

// Goroutines returns the process as one goroutine numbered
// lockstate.WholeProcess, if asked for it: its state is that of the
// thread that tells most, "S (sleeping), thread 12 of 40", and its frames
// that thread's kernel stack, innermost first.
func (t Threads) Goroutines(ctx context.Context, id procid.ID, gs []int64) (*stackdump.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	snap := &stackdump.Snapshot{PID: id.PID}
	if !slices.Contains(gs, lockstate.WholeProcess) {
		return snap, nil
	}
	p := procfs{root: cmp.Or(t.Proc, "/proc")}
	b, err := p.small(p.path(id.PID, "stat"))
	if err != nil {
		return nil, err
	}
	if id.Start != 0 {
		if st, err := parseStart(id.PID, b); err != nil || st != id.Start {
			return nil, fmt.Errorf("pid %d is another process now", id.PID)
		}
	}
	tids, err := p.tids(id.PID)
	if err != nil {
		return nil, err
	}
	var best *thread
	for _, tid := range tids {
		th, err := p.thread(id.PID, tid, true)
		if err != nil {
			continue // ended meanwhile
		}
		_, _, waiting := th.lockWait()
		if best == nil || waiting || (tid == id.PID && !lockWaiting(best)) {
			best = &th
		}
		if waiting {
			break
		}
	}
	if best == nil {
		return nil, fmt.Errorf("pid %d has no thread left", id.PID)
	}
	g := stackdump.Goroutine{ID: lockstate.WholeProcess, State: best.state}
	if len(tids) > 1 {
		g.State += fmt.Sprintf(", thread %d of %d", best.tid, len(tids))
	}
	for _, fn := range best.stack {
		g.Frames = append(g.Frames, stackdump.Frame{Func: fn})
	}
	if len(g.Frames) == 0 && best.wchan != "" {
		g.Frames = []stackdump.Frame{{Func: best.wchan}}
	}
	if len(g.Frames) == 0 {
		g.Frames = []stackdump.Frame{{Func: "(user space: no kernel function)"}}
	}
	snap.Goroutines = append(snap.Goroutines, g)
	return snap, nil
}

// Profile has no goroutine profile to give: a process read from /proc
// has no goroutines.
func (Threads) Profile(ctx context.Context, id procid.ID) (*stackdump.Profile, error) {
	return nil, fmt.Errorf("pid %d: no goroutine profile from /proc", id.PID)
}

// Text is Goroutines' answer for the process as a whole.
func (t Threads) Text(ctx context.Context, id procid.ID) (*stackdump.Snapshot, error) {
	return t.Goroutines(ctx, id, []int64{lockstate.WholeProcess})
}

func lockWaiting(t *thread) bool {
	_, _, ok := t.lockWait()
	return ok
}

func parseStart(pid int, b []byte) (uint64, error) {
	st, err := parseStat(pid, b)
	return st.Start, err
}
