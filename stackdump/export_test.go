package stackdump

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// The dumps the tests parse, taken as the probe takes them: the text
// traceback (runtime.Stack), the goroutine profile (runtime/pprof, debug=0)
// and a short execution trace (runtime/trace, started and stopped at once).

func CaptureText() ([]byte, error) {
	for size := 1 << 20; ; size *= 4 {
		buf := make([]byte, size)
		if n := runtime.Stack(buf, true); n < size {
			return buf[:n], nil
		}
	}
}

func CaptureProfile() ([]byte, error) {
	var b bytes.Buffer
	err := pprof.Lookup("goroutine").WriteTo(&b, 0)
	return b.Bytes(), err
}

func CaptureTrace() ([]byte, error) {
	var b bytes.Buffer
	if err := trace.Start(&b); err != nil {
		return nil, err
	}
	trace.Stop()
	return b.Bytes(), nil
}

// Capture is CaptureText parsed, stamped with the time and this process's
// id.
func Capture() (*Snapshot, error) {
	now := time.Now()
	text, err := CaptureText()
	if err != nil {
		return nil, err
	}
	s, perr := Parse(bytes.NewReader(text))
	s.PID, s.Time = os.Getpid(), now
	return s, errors.Join(err, perr)
}
