package stackdump_test

import (
	"bytes"
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
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := stackdump.ParseTrace(bytes.NewReader(b), nil)
		if s == nil {
			t.Fatal("nil snapshot")
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
