package stackdump

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// funcs lists the functions of frames.
func funcs(fs []Frame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Func)
	}
	return out
}

// TestTraceMatchesText takes a text dump and an execution trace of the same
// blocked goroutine and checks that the trace names it by the same id, with
// the same frames (function, file, line) as the text dump.
func TestTraceMatchesText(t *testing.T) {
	stop := startBlocked(t)
	defer stop()
	text, err := Capture()
	if err != nil {
		t.Fatal(err)
	}
	blocked := text.Calling("github.com/lockwatch/lockwatch/stackdump.blockedInCapture")
	if len(blocked) != 1 {
		t.Fatalf("text dump: %d goroutines in blockedInCapture; want 1", len(blocked))
	}
	want := blocked[0]
	b, err := CaptureTrace()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseTrace(bytes.NewReader(b), func(id int64) bool { return id == want.ID })
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Goroutines) != 1 {
		t.Fatalf("trace: %d goroutines; want only goroutine %d", len(s.Goroutines), want.ID)
	}
	got := s.Goroutines[0]
	if got.ID != want.ID {
		t.Fatalf("trace: goroutine %d; want %d", got.ID, want.ID)
	}
	if got.State == "" || got.State == "running" {
		t.Errorf("trace: state %q; want a blocked state", got.State)
	}
	if len(got.Frames) != len(want.Frames) {
		t.Fatalf("trace frames\n%v\nwant the text dump's\n%v", funcs(got.Frames), funcs(want.Frames))
	}
	for i := range got.Frames {
		g, w := got.Frames[i], want.Frames[i]
		if g.Func != w.Func || g.File != w.File || g.Line != w.Line {
			t.Errorf("frame %d: got %s %s:%d; want %s %s:%d", i, g.Func, g.File, g.Line, w.Func, w.File, w.Line)
		}
	}
}

// TestTraceAllGoroutines reads every goroutine of a trace: each blocked
// goroutine of a text dump taken before is in it (the test's own, running,
// is not: a running goroutine has no recorded stack).
func TestTraceAllGoroutines(t *testing.T) {
	stop := startBlocked(t)
	defer stop()
	b, err := CaptureTrace()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseTrace(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Calling("github.com/lockwatch/lockwatch/stackdump.blockedInCapture")) != 1 {
		t.Errorf("the blocked goroutine is not in the trace's %d goroutines", len(s.Goroutines))
	}
	if !slices.IsSortedFunc(s.Goroutines, func(a, b Goroutine) int { return int(a.ID - b.ID) }) {
		t.Error("goroutines not in id order")
	}
	for _, g := range s.Goroutines {
		for _, f := range g.Frames {
			if hiddenFrame(f.Func) {
				t.Errorf("goroutine %d: runtime frame %s kept", g.ID, f.Func)
			}
		}
	}
}

func TestParseTraceBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   io.Reader
		want error
	}{
		{"empty", strings.NewReader(""), nil},
		{"not a trace", strings.NewReader("goroutine 1 [running]:\nmain.main()\n"), nil},
		{"too large", io.MultiReader(strings.NewReader("go 1.26 trace\x00\x00\x00"), &zeros{n: MaxTraceSize + 10}), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTrace(tc.in, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
}

// TestParseTraceTruncated cuts a real trace short: an error, never a panic.
func TestParseTraceTruncated(t *testing.T) {
	b, err := CaptureTrace()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{20, len(b) / 3, len(b) / 2, len(b) - 1} {
		if _, err := ParseTrace(bytes.NewReader(b[:n]), nil); err == nil {
			t.Errorf("cut at %d of %d bytes: no error", n, len(b))
		}
	}
}

// zeros reads n zero bytes.
type zeros struct{ n int }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), z.n)
	clear(p[:k])
	z.n -= k
	return k, nil
}

// TestCountTrace: countTrace reads a real trace's tables (its stacks and
// strings), and charges them well below the bound; the amplifying trace's
// far above it.
func TestCountTrace(t *testing.T) {
	b, err := CaptureTrace()
	if err != nil {
		t.Fatal(err)
	}
	c := countTrace(b)
	if c.stacks == 0 || c.frames < c.stacks || c.strings == 0 || c.batches == 0 || c.bytes > MaxTraceDecoded/16 {
		t.Errorf("a real trace of %d bytes: %+v; want its stacks, frames, strings and batches counted, well under %d bytes", len(b), c, MaxTraceDecoded)
	}
	if err := checkTrace(b); err != nil {
		t.Error(err)
	}
	for _, bad := range [][]byte{nil, []byte("go 1.26 trace"), []byte("go 1.26 trace\x00\x00\x00\x01\xff"), []byte("go 1.21 trace\x00\x00\x00")} {
		if c := countTrace(bad); c.bytes > 1024 {
			t.Errorf("countTrace(%q) = %+v; want next to nothing", bad, c)
		}
	}
}
