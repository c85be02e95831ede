package stackdict_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/stackdict"
)

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// dictWith writes a dictionary: stack 1 with a line of n bytes, then
// stack 2 ordinary.
func dictWith(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stacks")
	var b bytes.Buffer
	head, tail := `{"id":"1","frames":[{"func":"`, `","file":"/a.go","line":1}]}`+"\n"
	b.WriteString(head)
	b.WriteString(strings.Repeat("f", max(n-len(head)-len(tail), 1)))
	b.WriteString(tail)
	b.WriteString(`{"id":"2","frames":[{"func":"main.g","file":"/g.go","line":2}]}` + "\n")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDictLongLines: a line longer than MaxDictLine is skipped without
// being held in memory, and reported; the lines after it are read; a long
// line within the limit (past the reader's buffer) is read whole.
func TestDictLongLines(t *testing.T) {
	for _, tt := range []struct {
		n      int
		want1  bool
		maxMiB uint64
	}{
		{100 << 10, true, 2}, // past the 64 KiB buffer, within the limit
		{stackdict.MaxLine + 1, false, 2},
		{8 << 20, false, 2}, // a line of 8 MiB (the audit's were 60 MiB)
	} {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			path := dictWith(t, tt.n)
			var got map[uint64][]record.Frame
			var err error
			n := allocated(func() { got, err = stackdict.Read(path) })
			if _, ok := got[1]; ok != tt.want1 {
				t.Errorf("ReadDict: stack 1 read: %v; want %v", ok, tt.want1)
			}
			if len(got[2]) != 1 {
				t.Errorf("ReadDict: stack 2 after the long line: got %v; want it", got[2])
			}
			if !tt.want1 && !errors.Is(err, stackdict.ErrLine) {
				t.Errorf("ReadDict: got %v; want ErrDictLine for the long line", err)
			}
			if n > tt.maxMiB<<20+uint64(2*tt.n)*b2u(tt.want1) {
				t.Errorf("ReadDict allocated %d KiB", n>>10)
			}

			f, _ := os.Open(path)
			defer f.Close()
			var x *stackdict.Index
			n = allocated(func() { x = stackdict.IndexOf(f, stackdict.MaxSize) })
			if n > tt.maxMiB<<20 {
				t.Errorf("IndexDict allocated %d KiB; want at most %d MiB", n>>10, tt.maxMiB)
			}
			if _, ok := x.Lookup(1); ok != tt.want1 {
				t.Errorf("Lookup(1): %v; want %v", ok, tt.want1)
			}
			if fr, ok := x.Lookup(2); !ok || fr[0].Func != "main.g" {
				t.Errorf("Lookup(2): %v, %v; want main.g", fr, ok)
			}
			if wantSkipped := 1 - int(b2u(tt.want1)); x.Skipped != wantSkipped {
				t.Errorf("Skipped: got %d; want %d", x.Skipped, wantSkipped)
			}
		})
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// TestDictAmplifyingLine: a dictionary line within MaxDictLine made of
// empty frames ("{},", 3 bytes each; 60 bytes of Frame decoded) is refused
// before it is decoded, by the reader and by the index's Lookup.
func TestDictAmplifyingLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stacks")
	var b bytes.Buffer
	b.WriteString(`{"id":"1","frames":[{}`)
	for b.Len() < stackdict.MaxLine-64 {
		b.WriteString(`,{}`)
	}
	b.WriteString("]}\n")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	n := allocated(func() { _, err = stackdict.Read(path) })
	if !errors.Is(err, stackdict.ErrLine) || n > 2<<20 {
		t.Errorf("ReadDict: %v, %d KiB allocated; want ErrDictLine and at most 2 MiB", err, n>>10)
	}
	f, _ := os.Open(path)
	defer f.Close()
	x := stackdict.IndexOf(f, stackdict.MaxSize)
	var ok bool
	n = allocated(func() { _, ok = x.Lookup(1) })
	if ok || n > 2<<20 {
		t.Errorf("Lookup: %v, %d KiB allocated; want the line refused, at most 2 MiB", ok, n>>10)
	}
}

// FuzzDecodeDict: any dictionary file reads as stacks or errors, never a
// panic; the index agrees with the decoder on what it finds.
func FuzzDecodeDict(f *testing.F) {
	f.Add([]byte(`{"id":"1","frames":[{"func":"main.f","file":"/f.go","line":1}]}` + "\n"))
	f.Add([]byte(`{"id":"ff","frames":[]}` + "\n" + `{"id":"zz"` + "\n"))
	f.Add(hostile.RandomBytes(1024, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := stackdict.Decode(bytes.NewReader(b))
		if err != nil && !errors.Is(err, stackdict.ErrLine) && m == nil {
			return
		}
		x := stackdict.IndexOf(bytes.NewReader(b), int64(len(b)))
		for id, frames := range m {
			// A line without frames decodes to nil, which Lookup
			// reports as no stack.
			if _, ok := x.Lookup(id); !ok && x.Skipped == 0 && len(frames) > 0 {
				t.Fatalf("stack %x decoded but not indexed", id)
			}
		}
	})
}
