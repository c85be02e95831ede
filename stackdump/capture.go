package stackdump

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// ErrTruncated reports a text dump that did not fit its buffer even on the
// second try (goroutines were started faster than the dump could grow).
var ErrTruncated = errors.New("stackdump: goroutine dump truncated")

const (
	// bytesPerGoroutine sizes CaptureText's buffer: a goroutine blocked a
	// few calls deep prints 400-700 bytes; deeper stacks take the second try.
	bytesPerGoroutine = 1 << 10
	minTextBuffer     = 64 << 10
)

// CaptureText returns the traceback of every goroutine of this process, as
// runtime.Stack(buf, true) prints it: goroutine ids, states, wait times,
// arguments. Parse reads it.
//
// The runtime stops the world for the whole dump: at 10,000 goroutines
// every goroutine of the process stands still for tens of milliseconds
// (see the benchmarks). Prefer CaptureProfile where ids and states are not
// needed.
//
// The buffer is sized from runtime.NumGoroutine up front; only if the dump
// fills it is it taken again, once, in a larger buffer. If that is full too,
// CaptureText returns the truncated dump and ErrTruncated.
func CaptureText() ([]byte, error) {
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
	return buf, ErrTruncated
}

func textBufferSize(goroutines int) int {
	return max(minTextBuffer, goroutines*bytesPerGoroutine+minTextBuffer)
}

// Capture takes CaptureText and parses it, stamped with the time and this
// process's id.
func Capture() (*Snapshot, error) {
	now := time.Now()
	text, err := CaptureText()
	if err != nil && !errors.Is(err, ErrTruncated) {
		return nil, err
	}
	s, perr := Parse(bytes.NewReader(text))
	s.PID, s.Time = os.Getpid(), now
	return s, errors.Join(err, perr)
}

// CaptureProfile returns the goroutine profile of this process as pprof
// protobuf (runtime/pprof's "goroutine" profile with debug=0), for files
// that `go tool pprof` reads, and for ParseProfile.
//
// It stops the world only briefly, but has no goroutine ids, states, wait
// times or arguments.
func CaptureProfile() ([]byte, error) {
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
