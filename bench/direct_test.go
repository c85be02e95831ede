package bench

import (
	stdsync "sync"
	"testing"

	"github.com/lockwatch/lockwatch/sync"
)

// The DropInDirect benchmarks call the methods directly, not through an
// interface, as most programs do: sync's Lock, Unlock, RLock and RUnlock
// are then inlined into the loop, and so are the drop-in's (each a call of
// its assembly fast path, or an inlined compare-and-swap for Unlock).

//go:noinline
func directMutex(b *testing.B, mu *sync.Mutex) {
	c0 := cpuNanos()
	for b.Loop() {
		mu.Lock()
		mu.Unlock()
	}
	reportCPU(b, c0)
}

//go:noinline
func directStdMutex(b *testing.B, mu *stdsync.Mutex) {
	c0 := cpuNanos()
	for b.Loop() {
		mu.Lock()
		mu.Unlock()
	}
	reportCPU(b, c0)
}

//go:noinline
func directRWMutex(b *testing.B, mu *sync.RWMutex) {
	c0 := cpuNanos()
	for b.Loop() {
		mu.RLock()
		mu.RUnlock()
	}
	reportCPU(b, c0)
}

//go:noinline
func directStdRWMutex(b *testing.B, mu *stdsync.RWMutex) {
	c0 := cpuNanos()
	for b.Loop() {
		mu.RLock()
		mu.RUnlock()
	}
	reportCPU(b, c0)
}

// BenchmarkDropInDirectLockUnlock: uncontended Lock+Unlock by direct calls.
func BenchmarkDropInDirectLockUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { directStdMutex(b, new(stdsync.Mutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { directMutex(b, new(sync.Mutex)) })
}

// BenchmarkDropInDirectRLockRUnlock: uncontended RLock+RUnlock by direct
// calls.
func BenchmarkDropInDirectRLockRUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { directStdRWMutex(b, new(stdsync.RWMutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { directRWMutex(b, new(sync.RWMutex)) })
}
