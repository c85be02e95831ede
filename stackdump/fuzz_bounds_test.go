package stackdump_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/stackdump"
)

// FuzzParseProfile: any bytes give a profile within the bounds on what is
// built, or an error; never a panic. Seeds: a real profile, the amplifying
// profile, a gzip bomb, random bytes.
func FuzzParseProfile(f *testing.F) {
	if real, err := stackdump.CaptureProfile(); err == nil {
		f.Add(real)
	}
	f.Add(hostile.AmplifyingProfile(64 << 10))
	f.Add(hostile.GzipBomb(1 << 20))
	f.Add(hostile.RandomBytes(4096, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := stackdump.ParseProfile(b)
		if err != nil {
			return
		}
		frames := 0
		for _, s := range p.Samples {
			frames += len(s.Frames)
		}
		if len(p.Samples) > stackdump.MaxProfileSamples || frames > stackdump.MaxProfileDecoded/64 {
			t.Fatalf("%d samples, %d frames: past the bounds", len(p.Samples), frames)
		}
	})
}

// FuzzParseTrace: any bytes give the goroutines of an execution trace or
// an error; never a panic. Seeds: a real trace, random bytes.
func FuzzParseTrace(f *testing.F) {
	if real, err := stackdump.CaptureTrace(); err == nil {
		f.Add(real)
	}
	f.Add(hostile.RandomBytes(4096, 2))
	f.Add(hostile.AmplifyingTrace(64 << 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := stackdump.ParseTrace(bytes.NewReader(b), nil)
		if s == nil {
			t.Fatal("nil snapshot")
		}
		if len(s.Goroutines) > stackdump.MaxTraceGoroutines {
			t.Fatalf("%d goroutines kept; want at most %d", len(s.Goroutines), stackdump.MaxTraceGoroutines)
		}
	})
}

// FuzzParseWithin: Parse keeps no more than its limits, however the input
// is made; what it drops it counts. Seeds: tiny goroutines, a real dump,
// random bytes.
func FuzzParseWithin(f *testing.F) {
	f.Add(hostile.TinyGoroutines(4096))
	if real, err := stackdump.CaptureText(); err == nil {
		f.Add(real)
	}
	f.Add(hostile.RandomBytes(4096, 3))
	l := stackdump.Limits{Goroutines: 8, Retained: 4096}
	f.Fuzz(func(t *testing.T, b []byte) {
		dumps, _ := stackdump.ParseDumpsWithin(bytes.NewReader(b), l)
		kept := 0
		for _, d := range dumps {
			kept += len(d.Goroutines)
			for _, g := range d.Goroutines {
				if g.Frames == nil {
					t.Fatalf("goroutine %d: nil frames", g.ID)
				}
			}
		}
		if kept > l.Goroutines {
			t.Fatalf("kept %d goroutines; the limit is %d", kept, l.Goroutines)
		}
	})
}

// TestAmplifyingTraceBounded: a trace of 8 MiB of one-frame stacks, which
// the trace parser would build into more than 100 MiB of tables, is refused
// having built almost nothing; a real trace is still read.
func TestAmplifyingTraceBounded(t *testing.T) {
	b := hostile.AmplifyingTrace(8 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := stackdump.ParseTraceData(b, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, stackdump.ErrTooLarge) || !strings.Contains(err.Error(), "stacks") {
		t.Errorf("ParseTraceData: %v; want ErrTooLarge, saying the stacks", err)
	}
	if built := after.TotalAlloc - before.TotalAlloc; built > 16<<20 {
		t.Errorf("reading an 8 MiB amplifying trace allocated %d MiB; want at most 16", built>>20)
	}
	real, err := stackdump.CaptureTrace()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := stackdump.ParseTraceData(real, nil); err != nil || len(s.Goroutines) == 0 {
		t.Errorf("a real trace: %d goroutines, %v; want them read", len(s.Goroutines), err)
	}
}
