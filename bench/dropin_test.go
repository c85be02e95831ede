package bench

import (
	stdsync "sync"
	"syscall"
	"testing"

	linkdata "github.com/linkdata/deadlock"
	"github.com/lockwatch/lockwatch/sync"
	"github.com/sasha-s/go-deadlock"
)

// The drop-in Mutex and RWMutex (github.com/lockwatch/lockwatch/sync)
// against sync and the two in-process deadlock detectors, in one run:
//
//	cd bench && go test -tags deadlock -run '^$' -bench DropIn -count 6 . | tee /tmp/dropin.txt
//	GOWORK=off go tool -modfile=../tools/go.mod benchstat -col /impl /tmp/dropin.txt
//
// (linkdata/deadlock records only with its deadlock build tag; without it
// its Mutex is sync's.)

type locker interface {
	Lock()
	Unlock()
}

type rwlocker interface {
	locker
	RLock()
	RUnlock()
}

var mutexes = []struct {
	name string
	new  func() locker
}{
	{"sync", func() locker { return new(stdsync.Mutex) }},
	{"lockwatch", func() locker { return new(sync.Mutex) }},
	{"go-deadlock", func() locker { return new(deadlock.Mutex) }},
	{"linkdata", func() locker { return new(linkdata.Mutex) }},
}

var rwmutexes = []struct {
	name string
	new  func() rwlocker
}{
	{"sync", func() rwlocker { return new(stdsync.RWMutex) }},
	{"lockwatch", func() rwlocker { return new(sync.RWMutex) }},
	{"go-deadlock", func() rwlocker { return new(deadlock.RWMutex) }},
	{"linkdata", func() rwlocker { return new(linkdata.RWMutex) }},
}

// cpuNanos is the CPU time this process has used. On a machine shared
// with other work a benchmark's wall time (ns/op) also counts the time the
// others ran; its CPU time (cpu-ns/op, reported beside it) does not.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// reportCPU reports the CPU time per op since c0.
func reportCPU(b *testing.B, c0 int64) {
	b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDropInLockUnlock: uncontended Lock+Unlock, 10 frames deep.
func BenchmarkDropInLockUnlock(b *testing.B) {
	for _, m := range mutexes {
		b.Run("impl="+m.name, func(b *testing.B) {
			mu := m.new()
			deep(depth, func() {
				b.ResetTimer()
				c0 := cpuNanos()
				for i := 0; i < b.N; i++ {
					mu.Lock()
					mu.Unlock()
				}
				reportCPU(b, c0)
			})
		})
	}
}

// BenchmarkDropInRLockRUnlock: uncontended RLock+RUnlock, 10 frames deep.
func BenchmarkDropInRLockRUnlock(b *testing.B) {
	for _, m := range rwmutexes {
		b.Run("impl="+m.name, func(b *testing.B) {
			mu := m.new()
			deep(depth, func() {
				b.ResetTimer()
				c0 := cpuNanos()
				for i := 0; i < b.N; i++ {
					mu.RLock()
					mu.RUnlock()
				}
				reportCPU(b, c0)
			})
		})
	}
}

// BenchmarkDropInParallelRLock: GOMAXPROCS goroutines (2 here) doing
// RLock+RUnlock on one RWMutex; ns/op is per operation of all of them.
func BenchmarkDropInParallelRLock(b *testing.B) {
	for _, m := range rwmutexes {
		b.Run("impl="+m.name, func(b *testing.B) {
			mu := m.new()
			c0 := cpuNanos()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.RLock()
					mu.RUnlock()
				}
			})
			reportCPU(b, c0)
		})
	}
}

// BenchmarkDropInContended: G goroutines incrementing one counter under one
// Mutex; ns/op is per Lock+Unlock of all of them.
func BenchmarkDropInContended(b *testing.B) {
	for _, g := range []int{2, 4, 8} {
		for _, m := range mutexes {
			b.Run("g="+string(rune('0'+g))+"/impl="+m.name, func(b *testing.B) {
				mu := m.new()
				var wg stdsync.WaitGroup
				per := b.N/g + 1
				counter := 0
				b.ResetTimer()
				c0 := cpuNanos()
				for k := 0; k < g; k++ {
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
				if counter != per*g {
					b.Fatalf("counter %d; want %d", counter, per*g)
				}
			})
		}
	}
}
