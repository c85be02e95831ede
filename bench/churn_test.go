package bench

import (
	"runtime"
	stdsync "sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/sync"
)

// BenchmarkDropInChurn: 100,000 structs with two mutexes each, made,
// locked and unlocked once each, then dropped; one op is one round. It
// reports the CPU time per round and the heap left after a collection
// once the structs are dropped (retained-MiB), beside sync's.
func BenchmarkDropInChurn(b *testing.B) {
	const n = 100_000
	type withSync struct {
		a, b stdsync.Mutex
		v    int
	}
	type withDropIn struct {
		a, b sync.Mutex
		v    int
	}
	churn := map[string]func(){
		"sync": func() {
			s := make([]*withSync, n)
			for i := range s {
				s[i] = new(withSync)
				s[i].a.Lock()
				s[i].b.Lock()
				s[i].v++
				s[i].b.Unlock()
				s[i].a.Unlock()
			}
		},
		"lockwatch": func() {
			s := make([]*withDropIn, n)
			for i := range s {
				s[i] = new(withDropIn)
				s[i].a.Lock()
				s[i].b.Lock()
				s[i].v++
				s[i].b.Unlock()
				s[i].a.Unlock()
			}
		},
	}
	for _, impl := range []string{"sync", "lockwatch"} {
		b.Run("impl="+impl, func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c0 := cpuNanos()
			for b.Loop() {
				churn[impl]()
			}
			reportCPU(b, c0)
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "retained-MiB")
		})
	}
}

// BenchmarkDropInBlocked: 10,000 goroutines blocked on one mutex; one op
// blocks them all and releases them. It reports the heap in use while they
// are blocked (heap-MiB) beside sync's.
func BenchmarkDropInBlocked(b *testing.B) {
	const n = 10_000
	for _, m := range mutexes[:2] {
		b.Run("impl="+m.name, func(b *testing.B) {
			var peak uint64
			c0 := cpuNanos()
			for b.Loop() {
				mu := m.new()
				mu.Lock()
				var wg stdsync.WaitGroup
				for i := 0; i < n; i++ {
					wg.Go(func() { mu.Lock(); mu.Unlock() })
				}
				// Let them reach the mutex (not a synchronisation: the
				// heap figure is read whatever happened meanwhile).
				for runtime.NumGoroutine() < n {
					runtime.Gosched()
				}
				time.Sleep(10 * time.Millisecond)
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse+ms.StackInuse)
				mu.Unlock()
				wg.Wait()
			}
			reportCPU(b, c0)
			b.ReportMetric(float64(peak)/(1<<20), "heap+stack-MiB")
		})
	}
}
