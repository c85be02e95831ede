package probe

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"

	"github.com/lockwatch/lockwatch/internal/rt/probewire"
)

// errTruncated reports a text dump that did not fit its buffer even on the
// second try (goroutines were started faster than the dump could grow).
var errTruncated = errors.New("goroutine dump truncated")

const (
	// bytesPerGoroutine sizes captureTextDump's buffer: a goroutine blocked a
	// few calls deep prints 400-700 bytes; deeper stacks take the second try.
	bytesPerGoroutine = 1 << 10
	minTextBuffer     = 64 << 10
)

// captureTextDump returns the traceback of every goroutine of this process, as
// runtime.Stack(buf, true) prints it: goroutine ids, states, wait times,
// arguments. stackdump.Parse reads it.
//
// The runtime stops the world for the whole dump: at 10,000 goroutines
// every goroutine of the process stands still for tens of milliseconds
// (see the benchmarks). Prefer captureProfile where ids and states are not
// needed.
//
// The buffer is sized from runtime.NumGoroutine up front; only if the dump
// fills it is it taken again, once, in a larger buffer. If that is full too,
// captureTextDump returns the truncated dump and errTruncated.
func captureTextDump() ([]byte, error) {
	return captureText(textBufferSize(runtime.NumGoroutine()))
}

func captureText(size int) ([]byte, error) {
	buf := make([]byte, size)
	n := runtime.Stack(buf, true)
	if n < len(buf) {
		return buf[:n], nil
	}
	// Short: the stacks are deeper than estimated, or goroutines were
	// started meanwhile. Another stop of the world is costly: aim high.
	buf = make([]byte, 4*len(buf))
	n = runtime.Stack(buf, true)
	if n < len(buf) {
		return buf[:n], nil
	}
	return buf, errTruncated
}

func textBufferSize(goroutines int) int {
	return max(minTextBuffer, goroutines*bytesPerGoroutine+minTextBuffer)
}

// captureProfile returns the goroutine profile of this process as pprof
// protobuf (runtime/pprof's "goroutine" profile with debug=0), for files
// that `go tool pprof` reads, and for stackdump.ParseProfile.
//
// It stops the world only briefly, but has no goroutine ids, states, wait
// times or arguments.
func captureProfile() ([]byte, error) {
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// errTracerBusy is returned, wrapped, by captureTrace when the process's
// execution tracer is already in use (runtime/trace.Start was called and
// not stopped): a process has one.
var errTracerBusy = errors.New("the execution tracer is in use")

// captureTrace returns a short execution trace of this process
// (runtime/trace, started and stopped at once), which stackdump.ParseTrace reads into
// goroutines: ids, states and stacks, as a text dump has them.
//
// Unlike captureTextDump it never stops the world for the whole traversal:
// the runtime stops it for moments, to start and to end the trace, and
// suspends each goroutine on its own, for the time it takes to record its
// stack (docs/benchmarks.md: a 10,100-goroutine process stopped at most
// 0.9 ms outside GC where its text dump stopped it 29.4 ms). The costs: CPU time spread
// over the capture, some 2.5 MiB of the runtime's tracer state allocated on
// the heap (in a program with a small heap, a GC cycle), and, during the
// capture, a trace.Start of the program's own fails (the execution tracer
// has one such writer).
//
// It returns errTracerBusy if the program is tracing itself, and
// stackdump.ErrTooLarge if the trace passes probewire.MaxTraceSize (the rest is not kept).
func captureTrace() ([]byte, error) {
	w := &cappedWriter{max: probewire.MaxTraceSize}
	if err := trace.Start(w); err != nil {
		return nil, fmt.Errorf("%w: %v", errTracerBusy, err)
	}
	trace.Stop() // returns after the last write
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over {
		return nil, fmt.Errorf("the execution trace passed %d MiB", probewire.MaxTraceSize>>20)
	}
	return w.b.Bytes(), nil
}

// cappedWriter keeps the first max bytes written to it and drops the rest,
// never failing a write (the runtime's trace writer must not be stopped by
// an error).
type cappedWriter struct {
	mu   sync.Mutex
	max  int
	b    bytes.Buffer
	over bool
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over || w.b.Len()+len(p) > w.max {
		w.over = true
		return len(p), nil
	}
	return w.b.Write(p)
}
