package goproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Counts is what Count finds in the target.
type Counts struct {
	// Goroutines counts its goroutines, not the runtime's own (as
	// tracebacks count them, and Image.Goroutines without System).
	Goroutines int
	// LockWaiters counts the goroutines blocked in a sync.Mutex's Lock, or
	// an RWMutex's Lock or RLock (the drop-in's included): those whose wait
	// reason says so.
	LockWaiters int
	// LongestWait is a lower bound of the longest of those waits (see
	// Goroutine.WaitingAtLeast); 0 when none is known.
	LongestWait time.Duration
	// Inconsistent counts goroutines that kept changing while they were
	// read: not counted.
	Inconsistent int
}

// countBatch is how many g's Count reads at a time: its memory, with the
// g's read twice, a few hundred KiB whatever the target's size.
const countBatch = 1024

// maxAllgMoves bounds how often Count follows the list of g's to a new
// copy (the runtime doubles it when it grows, so a real process moves it a
// few times at most; a target whose words keep changing is given up).
const maxAllgMoves = 32

// Count reads the target's goroutines countBatch at a time and counts
// them, keeping none, not even their addresses: its memory is the same for
// a target of ten goroutines and one of millions. It is the look that
// lockwatch ps takes at every Go process of the user, where Read's Image
// would grow with the largest. A goroutine is counted from two equal
// reads of its g, as Read takes it; its stack is not read (Options.NoStacks
// or not).
func (p *Process) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := p.reading(func(r *reader) (err error) {
		c, err = p.count(ctx, r)
		return err
	})
	return c, err
}

func (p *Process) count(ctx context.Context, r *reader) (Counts, error) {
	var c Counts
	// No stacks, whatever the Options say.
	defer func(was bool) { p.opts.NoStacks = was }(p.opts.NoStacks)
	p.opts.NoStacks = true
	l, err := p.allgList(r)
	if err != nil {
		return c, err
	}
	reasons := p.waitReasons(r)
	now := monoNow()
	raw := make([]byte, countBatch*8)
	// The addresses of a batch, and those read again: two buffers, in
	// turns.
	bufs := [2][]uint64{make([]uint64, countBatch), make([]uint64, countBatch)}
	moves := 0
	for i := uint64(0); i < l.n; {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		k := min(countBatch, l.n-i)
		ps := []Piece{{Addr: l.ptr + i*8, Buf: raw[:k*8]}}
		if r.pieces(ps) != nil {
			return c, r.err
		}
		// The runtime replaces the list by a larger copy as it grows, and
		// the old one may be freed: this part was read from the list in
		// use only if the list has not moved since.
		ptr, ok := r.u64(l.ptrAt)
		if r.err != nil {
			return c, r.err
		}
		if !ok || !ps[0].OK {
			return c, fmt.Errorf("pid %d: runtime.allgs (%d goroutines at %#x) is not readable: a corrupted image", p.PID, l.n, l.ptr)
		}
		if ptr != l.ptr {
			if moves++; moves > maxAllgMoves {
				return c, fmt.Errorf("pid %d: runtime.allgs moved %d times while it was read: a corrupted image", p.PID, moves-1)
			}
			l.ptr = ptr // the copy begins with the same g's: read this part again from it
			continue
		}
		todo := bufs[0][:k]
		for j := range todo {
			todo[j] = le.Uint64(raw[j*8:])
		}
		for attempt, cur := 0, 0; attempt <= p.opts.Retries && len(todo) > 0; attempt, cur = attempt+1, 1-cur {
			first := p.readGs(r, todo, &p.gs[0])
			second := p.readGs(r, todo, &p.gs[1])
			if r.err != nil {
				return c, r.err
			}
			again := bufs[1-cur][:0]
			for j, addr := range todo {
				a, b := first[j], second[j]
				if !a.ok || !b.ok {
					continue // not a g (a hole in allgs), or unmapped
				}
				if !bytes.Equal(a.raw, b.raw) {
					again = append(again, addr)
					continue
				}
				g, ok := p.goroutine(addr, b, reasons, now)
				if !ok {
					continue
				}
				if !g.System {
					c.Goroutines++
				}
				if k := waitKinds[g.WaitReason].kind; k == "sync.Mutex" || k == "sync.RWMutex" {
					c.LockWaiters++
					if g.WaitKnown {
						c.LongestWait = max(c.LongestWait, g.WaitingAtLeast)
					}
				}
			}
			todo = again
		}
		c.Inconsistent += len(todo)
		i += k
	}
	return c, nil
}

// reading runs f with a reader of the target, within Options.MaxBytes, and
// makes its error the target's own when it exited, or exec'd another
// program, meanwhile (what f read is then not of this process).
func (p *Process) reading(f func(r *reader) error) error {
	if err := p.checkSame(); err != nil {
		return err
	}
	r := &reader{mem: p.mem, budget: p.opts.MaxBytes, near: &p.near}
	err := f(r)
	if err == nil {
		err = r.err
	}
	if err != nil {
		if errors.Is(err, ErrExited) || p.checkSame() != nil {
			return fmt.Errorf("pid %d: %w", p.PID, ErrExited)
		}
		return err
	}
	// A target that exec'd mid-read gave bytes of another program.
	return p.checkSame()
}
