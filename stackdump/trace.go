package stackdump

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	xtrace "golang.org/x/exp/trace"
)

// MaxTraceSize bounds an execution trace that ParseTrace reads. A trace started and stopped at once holds one status
// event per goroutine (some 16 bytes) and each distinct stack once: 10,000
// goroutines in a few distinct stacks take some 165 KiB. A program would
// need hundreds of thousands of goroutines in as many distinct stacks, or
// a storm of scheduling events in the moment it is traced, to come near.
const MaxTraceSize = 32 << 20

// ParseTrace reads an execution trace (runtime/trace; the probe takes one,
// started and stopped at once, for lockwatch), into
// the goroutines for which want returns true (all if want is nil), each
// with its id, state and stack at the end of the trace, in the order of
// their ids. Only the wanted goroutines are kept: a trace of many
// goroutines costs the reader its bytes and what the trace parser
// (golang.org/x/exp/trace) holds of one generation, not a Goroutine each.
//
// What the trace says of each goroutine:
//
//   - a goroutine that did not run while the trace was taken has the stack
//     and state the runtime recorded for it when the trace ended ("waiting",
//     "runnable", "syscall": the runtime records no wait reason there);
//   - one that blocked while it was taken has the stack where it blocked,
//     and the reason as its state ("chan receive", "sync", "select");
//   - one that was running when the trace ended has no stack: it is left
//     out, as is one that ended.
//
// Frames are innermost first. As in a text dump, the runtime's own
// unexported frames (runtime.gopark and the like) are left out.
//
// Input past MaxTraceSize is refused with ErrTooLarge (the input is read
// whole first: the trace parser holds a generation anyway), and so is a
// trace whose tables would build more than MaxTraceDecoded bytes (counted
// before the parser builds them); goroutines past MaxTraceGoroutines are
// counted in Snapshot.Dropped, not kept. A damaged trace returns what its
// events before the damage said, and the error.
func ParseTrace(r io.Reader, want func(id int64) bool) (s *Snapshot, err error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxTraceSize+1))
	if err != nil {
		return &Snapshot{Goroutines: []Goroutine{}}, fmt.Errorf("stackdump: execution trace: %w", err)
	}
	return ParseTraceData(b, want)
}

// ParseTraceData is ParseTrace of a trace already in memory (a probe's
// answer), which it reads in place.
func ParseTraceData(b []byte, want func(id int64) bool) (s *Snapshot, err error) {
	s = &Snapshot{Goroutines: []Goroutine{}}
	if len(b) > MaxTraceSize {
		return s, fmt.Errorf("%w: the execution trace is more than %d MiB", ErrTooLarge, MaxTraceSize>>20)
	}
	if err := checkTrace(b); err != nil {
		return s, err
	}
	defer func() {
		// The trace parser is written for the runtime's own output; a
		// hostile probe's bytes must not take lockwatch down with it.
		if p := recover(); p != nil {
			err = fmt.Errorf("stackdump: execution trace: unreadable (%v)", p)
		}
	}()
	tr, err := xtrace.NewReader(bytes.NewReader(b))
	if err != nil {
		return s, fmt.Errorf("stackdump: execution trace: %w", err)
	}
	gs := make(map[int64]*traceState)
	dropped := make(map[int64]bool) // goroutines past MaxTraceGoroutines, counted up to as many
	defer func() { s.Dropped = len(dropped) }()
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.Goroutines = collect(gs)
			return s, fmt.Errorf("stackdump: execution trace: %w", err)
		}
		if ev.Kind() != xtrace.EventStateTransition {
			continue
		}
		tx := ev.StateTransition()
		if tx.Resource.Kind != xtrace.ResourceGoroutine {
			continue
		}
		id := int64(tx.Resource.Goroutine())
		if want != nil && !want(id) {
			continue
		}
		from, to := tx.Goroutine()
		g := gs[id]
		if g == nil {
			if len(gs) >= MaxTraceGoroutines {
				if !dropped[id] && len(dropped) < MaxTraceGoroutines {
					dropped[id] = true
				}
				continue
			}
			g = &traceState{}
			gs[id] = g
		}
		switch {
		case to == xtrace.GoNotExist:
			delete(gs, id)
		case from == xtrace.GoUndetermined:
			// A status event: the goroutine's stack as the runtime
			// recorded it (none for a goroutine that was running).
			g.state, g.frames = goState(to, ""), traceFrames(tx.Stack)
		case from == xtrace.GoRunning && int64(ev.Goroutine()) == id:
			// The goroutine itself stopped running: where it did.
			g.state, g.frames = goState(to, tx.Reason), traceFrames(ev.Stack())
		case to == xtrace.GoRunning:
			// It runs: the stack it had is gone.
			g.state, g.frames = goState(to, ""), nil
		default:
			// Woken by another goroutine (the stack of the event is the
			// waker's): still where it stopped, until it runs.
			g.state = goState(to, "")
		}
	}
	s.Goroutines = collect(gs)
	return s, nil
}

// traceState is what a trace said last of a goroutine.
type traceState struct {
	state  string
	frames []Frame // nil: not known (it was running)
}

// collect lists the goroutines with a known stack, in id order.
func collect(gs map[int64]*traceState) []Goroutine {
	out := []Goroutine{}
	for id, g := range gs {
		if len(g.frames) > 0 {
			out = append(out, Goroutine{ID: id, State: g.state, Frames: g.frames})
		}
	}
	slices.SortFunc(out, func(a, b Goroutine) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// goState names a goroutine state as a text dump would, where the trace
// gives a reason ("chan receive"), else by the trace's own state.
func goState(s xtrace.GoState, reason string) string {
	if reason != "" && s == xtrace.GoWaiting {
		return reason
	}
	switch s {
	case xtrace.GoRunnable:
		return "runnable"
	case xtrace.GoRunning:
		return "running"
	case xtrace.GoWaiting:
		return "waiting"
	case xtrace.GoSyscall:
		return "syscall"
	}
	return strings.ToLower(s.String())
}

// traceFrames turns a trace stack into frames, innermost first, without
// the runtime's unexported frames (a text dump leaves them out too).
func traceFrames(st xtrace.Stack) []Frame {
	var out []Frame
	for f := range st.Frames() {
		if hiddenFrame(f.Func) {
			continue
		}
		out = append(out, Frame{Func: f.Func, File: f.File, Line: int(f.Line)})
	}
	return out
}

// hiddenFrame reports a frame the runtime's traceback leaves out: an
// unexported function of package runtime or internal/runtime/...
func hiddenFrame(fn string) bool {
	if strings.HasPrefix(fn, "internal/runtime/") {
		return true
	}
	rest, ok := strings.CutPrefix(fn, "runtime.")
	if !ok || rest == "" {
		return false
	}
	return !unicode.IsUpper(rune(rest[0]))
}
