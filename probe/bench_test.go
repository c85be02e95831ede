package probe

import (
	"context"
	"fmt"
	"math"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGoroutinesRequest measures a goroutine-dump request end to end
// (Client.Goroutines: connect, request, capture, answer, read) against this
// process's probe with 10,000 goroutines blocked, 10 of them waiting for a
// registry lock. It reports:
//
//   - stw-ms: the longest stop of the world meanwhile, as the runtime
//     records it (/sched/pauses/total/*): how long every other goroutine
//     of the process stood still at once;
//   - gap-ms: the longest a goroutine reading the clock in a loop went
//     without reading it: stops of the world, plus the CPU the dump and the
//     client take from it on a small machine;
//   - dump-KiB: the dump's size.
//
// Format "none" sends an info request instead: the pauses seen without any
// dump (scheduling, GC).
func BenchmarkGoroutinesRequest(b *testing.B) {
	for _, format := range []string{"none", FormatProto, FormatText} {
		b.Run(fmt.Sprintf("format=%s/goroutines=10000", format), func(b *testing.B) {
			a, err := Start(Options{Dir: b.TempDir() + "/run", NoSignal: true})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			defer blockGoroutines(b, a, 10_000, 10)()
			cl := &Client{Path: a.SocketPath(), Timeout: time.Minute}
			ctx := context.Background()
			var size int
			stops := readStops()
			stopMeter := meterPauses()
			for b.Loop() {
				if format == "none" {
					if _, err := cl.Info(ctx); err != nil {
						b.Fatal(err)
					}
					continue
				}
				d, err := cl.Goroutines(ctx, format == FormatText)
				if err != nil {
					b.Fatal(err)
				}
				size = len(d.Data)
			}
			gap := stopMeter()
			b.ReportMetric(float64(longestStop(stops, readStops()))/float64(time.Millisecond), "stw-ms")
			b.ReportMetric(float64(gap)/float64(time.Millisecond), "gap-ms")
			if format != "none" {
				b.ReportMetric(float64(size)/(1<<10), "dump-KiB")
			}
		})
	}
}

// blockGoroutines starts n goroutines, of which waiters wait for a lock of
// a's registry and the others in a channel receive a few calls deep, and
// returns a function that ends them all.
func blockGoroutines(b *testing.B, a *Agent, n, waiters int) (end func()) {
	m, err := a.Registry().Mutex("bench.lock")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Lock(ctx); err != nil {
		b.Fatal(err)
	}
	var running, ended sync.WaitGroup
	running.Add(n)
	ended.Add(n)
	for i := range n {
		go func() {
			defer ended.Done()
			if i < waiters {
				running.Done()
				if m.Lock(ctx) == nil {
					b.Error("acquired a held lock")
				}
				return
			}
			nested(3, func() {
				running.Done()
				<-ctx.Done()
			})
		}()
	}
	running.Wait()
	return func() {
		cancel()
		ended.Wait()
		if err := m.Unlock(); err != nil {
			b.Error(err)
		}
	}
}

// nested calls f depth calls deep, for stacks of some depth.
func nested(depth int, f func()) {
	if depth == 0 {
		f()
		return
	}
	nested(depth-1, f)
}

// meterPauses starts a goroutine that reads the clock in a loop and keeps
// the longest gap between two readings: the longest time the process's
// goroutines were stopped (or this one was not scheduled). The function it
// returns stops the goroutine and returns that gap.
func meterPauses() (stop func() time.Duration) {
	var quit atomic.Bool
	longest := make(chan time.Duration)
	go func() {
		var gap time.Duration
		for prev := time.Now(); !quit.Load(); {
			now := time.Now()
			gap = max(gap, now.Sub(prev))
			prev = now
		}
		longest <- gap
	}()
	return func() time.Duration {
		quit.Store(true)
		return <-longest
	}
}

// The runtime's histograms of stop-the-world pauses: for the GC and for
// everything else (a goroutine profile, runtime.Stack of all goroutines).
var stopMetrics = []string{"/sched/pauses/total/gc:seconds", "/sched/pauses/total/other:seconds"}

// readStops reads the pause histograms.
func readStops() []metrics.Sample {
	s := make([]metrics.Sample, len(stopMetrics))
	for i, name := range stopMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	return s
}

// longestStop returns the upper bound of the bucket of the longest pause
// counted between two readStops.
func longestStop(before, after []metrics.Sample) time.Duration {
	var longest float64
	for i := range after {
		if after[i].Value.Kind() != metrics.KindFloat64Histogram {
			continue
		}
		h0, h1 := before[i].Value.Float64Histogram(), after[i].Value.Float64Histogram()
		for j := len(h1.Counts) - 1; j >= 0; j-- {
			if h1.Counts[j] > h0.Counts[j] {
				upper := h1.Buckets[j+1]
				if math.IsInf(upper, 1) {
					upper = h1.Buckets[j]
				}
				longest = max(longest, upper)
				break
			}
		}
	}
	return time.Duration(longest * float64(time.Second))
}
