// Package stops reads how long the runtime stopped the world, from its
// pause histograms (runtime/metrics): the probe says it of each dump it
// takes, and the attach benchmarks of each target.
package stops

import (
	"math"
	"runtime/metrics"
	"time"
)

// The runtime's histograms of stop-the-world pauses: for the GC (Names[0])
// and for everything else (Names[1]: a goroutine profile, runtime.Stack of
// all goroutines, the start and end of a trace).
var Names = [...]string{"/sched/pauses/total/gc:seconds", "/sched/pauses/total/other:seconds"}

// Read reads the pause histograms, in the order of Names.
func Read() []metrics.Sample {
	s := make([]metrics.Sample, len(Names))
	for i, name := range Names {
		s[i].Name = name
	}
	metrics.Read(s)
	return s
}

// Longest returns the upper bound of the histogram bucket of the longest
// pause counted between two Reads (the lower bound for the last, open
// bucket); 0 if none was. before and after may be the same sub-slice of
// two Reads, for one histogram alone.
func Longest(before, after []metrics.Sample) time.Duration {
	var longest float64
	for i := range after {
		if after[i].Value.Kind() != metrics.KindFloat64Histogram || before[i].Value.Kind() != metrics.KindFloat64Histogram {
			continue
		}
		h0, h1 := before[i].Value.Float64Histogram(), after[i].Value.Float64Histogram()
		if len(h0.Counts) != len(h1.Counts) {
			continue
		}
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
