package sync_test

import (
	"strconv"
	gosync "sync"
	"syscall"
	"testing"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// depth is how deep below the benchmark each acquire happens, as in
// bench/: a realistic stack.
const depth = 10

//go:noinline
func deep(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	deep(n-1, f)
}

type locker interface {
	Lock()
	Unlock()
}

type rwlocker interface {
	locker
	RLock()
	RUnlock()
}

// cpuNanos is the CPU time this process has used. On a machine shared
// with other work a benchmark's wall time (ns/op) also counts the time the
// others ran; its CPU time (cpu-ns/op, reported beside it) does not.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func reportCPU(b *testing.B, c0 int64) {
	b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
}

func benchLockUnlock(b *testing.B, mu locker) {
	deep(depth, func() {
		b.ResetTimer()
		c0 := cpuNanos()
		for i := 0; i < b.N; i++ {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
		reportCPU(b, c0)
	})
}

func benchRLockRUnlock(b *testing.B, mu rwlocker) {
	deep(depth, func() {
		b.ResetTimer()
		c0 := cpuNanos()
		for i := 0; i < b.N; i++ {
			mu.RLock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.RUnlock()
		}
		reportCPU(b, c0)
	})
}

// The benchmarks of this file compare this package's types (impl=lockwatch)
// with sync's (impl=sync) in one run. Built with -tags nolockwatch, the two
// are the same types, and the figures must agree:
//
//	go test -run '^$' -bench . -count 6 ./sync | tee on.txt
//	go test -tags nolockwatch -run '^$' -bench . -count 6 ./sync | tee off.txt
//	GOWORK=off go tool -modfile=tools/go.mod benchstat -col /impl off.txt

// BenchmarkLockUnlock is an uncontended Lock+Unlock, with the holder
// record (impl=lockwatch) and without (impl=sync).
func BenchmarkLockUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { benchLockUnlock(b, new(gosync.Mutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { benchLockUnlock(b, new(lwsync.Mutex)) })
}

// BenchmarkRLockRUnlock is an uncontended RLock+RUnlock, with the reader
// record.
func BenchmarkRLockRUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { benchRLockRUnlock(b, new(gosync.RWMutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { benchRLockRUnlock(b, new(lwsync.RWMutex)) })
}

func benchParallelRead(b *testing.B, mu rwlocker) {
	b.SetParallelism(1) // GOMAXPROCS goroutines: 2 on the reference machine
	c0 := cpuNanos()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.RLock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.RUnlock()
		}
	})
	reportCPU(b, c0)
}

// BenchmarkParallelRLock is GOMAXPROCS goroutines (run with -cpu 2) doing
// RLock+RUnlock on one RWMutex: readers must not serialise.
func BenchmarkParallelRLock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { benchParallelRead(b, new(gosync.RWMutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { benchParallelRead(b, new(lwsync.RWMutex)) })
}

func benchContended(b *testing.B, goroutines int, mu locker) {
	var wg gosync.WaitGroup
	per := b.N/goroutines + 1
	counter := 0
	b.ResetTimer()
	c0 := cpuNanos()
	for g := 0; g < goroutines; g++ {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	reportCPU(b, c0)
	if counter != per*goroutines {
		b.Fatalf("counter %d; want %d", counter, per*goroutines)
	}
}

// BenchmarkContended is G goroutines incrementing a counter under one
// Mutex; ns/op is per Lock+Unlock of all of them.
func BenchmarkContended(b *testing.B) {
	for _, g := range []int{2, 4, 8} {
		b.Run("g="+itoa(g)+"/impl=sync", func(b *testing.B) { benchContended(b, g, new(gosync.Mutex)) })
		b.Run("g="+itoa(g)+"/impl=lockwatch", func(b *testing.B) { benchContended(b, g, new(lwsync.Mutex)) })
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
