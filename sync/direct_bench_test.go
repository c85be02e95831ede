//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	gosync "sync"
	"testing"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// The Direct benchmarks call the methods directly, not through an
// interface, as most programs do: sync's Lock, Unlock, RLock and RUnlock
// are then inlined into the loop, and this package's where the compiler
// can.

// BenchmarkDirectLockUnlock is an uncontended Lock+Unlock by direct calls.
func BenchmarkDirectLockUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) {
		mu := new(gosync.Mutex)
		c0 := cpuNanos()
		for b.Loop() {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
		reportCPU(b, c0)
	})
	b.Run("impl=lockwatch", func(b *testing.B) {
		mu := new(lwsync.Mutex)
		c0 := cpuNanos()
		for b.Loop() {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
		reportCPU(b, c0)
	})
}

// BenchmarkDirectRLockRUnlock is an uncontended RLock+RUnlock by direct
// calls.
func BenchmarkDirectRLockRUnlock(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) {
		mu := new(gosync.RWMutex)
		c0 := cpuNanos()
		for b.Loop() {
			mu.RLock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.RUnlock()
		}
		reportCPU(b, c0)
	})
	b.Run("impl=lockwatch", func(b *testing.B) {
		mu := new(lwsync.RWMutex)
		c0 := cpuNanos()
		for b.Loop() {
			mu.RLock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.RUnlock()
		}
		reportCPU(b, c0)
	})
}
