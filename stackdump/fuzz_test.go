package stackdump

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse neither panics nor loses its way on any
// input: every goroutine it returns has a state and frames. Seeds are in
// testdata/fuzz/FuzzParse and the fixtures testdata/*.txt.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, _ := Parse(bytes.NewReader(in))
		if s == nil {
			t.Fatal("Parse: got nil snapshot")
		}
		for _, g := range s.Goroutines {
			if g.Frames == nil {
				t.Errorf("goroutine %d: got nil frames; want empty", g.ID)
			}
			if g.Elided != nil && (g.Elided.At < 0 || g.Elided.At > len(g.Frames)) {
				t.Errorf("goroutine %d: elision at %d of %d frames", g.ID, g.Elided.At, len(g.Frames))
			}
		}
		GroupGoroutines(s.Goroutines, IgnoreArgs)
		GroupGoroutines(s.Goroutines, ExactArgs)
	})
}
