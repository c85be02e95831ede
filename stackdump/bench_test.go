package stackdump

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchSizes = []int{10, 1_000, 10_000}

// BenchmarkCaptureProfile measures CaptureProfile with n goroutines
// blocked, and the longest pause it causes to a busy goroutine (pause-ms).
func BenchmarkCaptureProfile(b *testing.B) {
	benchCapture(b, func() error { _, err := CaptureProfile(); return err })
}

// BenchmarkCaptureText is BenchmarkCaptureProfile for CaptureText.
func BenchmarkCaptureText(b *testing.B) {
	benchCapture(b, func() error { _, err := CaptureText(); return err })
}

func benchCapture(b *testing.B, capture func() error) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			defer startGoroutines(b, n)()
			b.ReportAllocs()
			m := startPauseMeter()
			for b.Loop() {
				if err := capture(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(m.stop())/float64(time.Millisecond), "pause-ms")
		})
	}
}

// BenchmarkCaptureTrace is BenchmarkCaptureProfile for CaptureTrace.
func BenchmarkCaptureTrace(b *testing.B) {
	benchCapture(b, func() error { _, err := CaptureTrace(); return err })
}

// BenchmarkParseTrace measures ParseTrace of CaptureTrace's trace of n
// goroutines, keeping 10 of them (as a report does: the goroutines its
// findings name).
func BenchmarkParseTrace(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			end := startGoroutines(b, n)
			tr, err := CaptureTrace()
			end()
			if err != nil {
				b.Fatal(err)
			}
			all, err := ParseTrace(bytes.NewReader(tr), nil)
			if err != nil || len(all.Goroutines) < 10 {
				b.Fatalf("%d goroutines in the trace (%v)", len(all.Goroutines), err)
			}
			want := map[int64]bool{}
			for _, g := range all.Goroutines[len(all.Goroutines)-10:] {
				want[g.ID] = true
			}
			b.SetBytes(int64(len(tr)))
			b.ReportAllocs()
			for b.Loop() {
				s, err := ParseTrace(bytes.NewReader(tr), func(id int64) bool { return want[id] })
				if err != nil || len(s.Goroutines) != 10 {
					b.Fatalf("%d goroutines kept (%v); want 10", len(s.Goroutines), err)
				}
			}
		})
	}
}

// BenchmarkParse measures Parse of CaptureText's dump of n goroutines.
func BenchmarkParse(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			text := benchDump(b, n)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(bytes.NewReader(text)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGroupGoroutines measures grouping the parsed dump of n
// goroutines.
func BenchmarkGroupGoroutines(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			s, err := Parse(bytes.NewReader(benchDump(b, n)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				GroupGoroutines(s.Goroutines, IgnoreArgs)
			}
		})
	}
}

// benchDump returns the text dump of this process with n more goroutines
// blocked.
func benchDump(b *testing.B, n int) []byte {
	defer startGoroutines(b, n)()
	text, err := CaptureText()
	if err != nil {
		b.Fatal(err)
	}
	return text
}

// startGoroutines starts n goroutines blocked a few calls deep, half in a
// channel receive and half in a select, and returns a function that
// releases them and waits for them to end.
func startGoroutines(b *testing.B, n int) (release func()) {
	b.Helper()
	ch := make(chan struct{})
	var started, done sync.WaitGroup
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			benchBlock(3, i%2 == 0, ch, &started)
		}()
	}
	started.Wait()
	return func() {
		close(ch)
		done.Wait()
	}
}

func benchBlock(depth int, sel bool, ch chan struct{}, started *sync.WaitGroup) {
	if depth > 0 {
		benchBlock(depth-1, sel, ch, started)
		return
	}
	started.Done()
	if sel {
		select {
		case <-ch:
		case <-time.After(time.Hour):
		}
		return
	}
	<-ch
}

// A pauseMeter is a goroutine that reads the clock in a busy loop and
// keeps the longest gap between two reads: how long the process's other
// goroutines were stopped.
type pauseMeter struct {
	done   atomic.Bool
	result chan time.Duration
}

func startPauseMeter() *pauseMeter {
	m := &pauseMeter{result: make(chan time.Duration)}
	ready := make(chan struct{})
	go func() {
		var longest time.Duration
		last := time.Now()
		close(ready)
		for !m.done.Load() {
			now := time.Now()
			longest = max(longest, now.Sub(last))
			last = now
		}
		m.result <- longest
	}()
	<-ready
	return m
}

// stop ends the meter and returns the longest pause it saw.
func (m *pauseMeter) stop() time.Duration {
	m.done.Store(true)
	return <-m.result
}
