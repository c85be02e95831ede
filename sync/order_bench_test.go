//lint:file-ignore SA2001 the order of acquires is what is measured: the critical sections are empty on purpose

package sync_test

import (
	gosync "sync"
	"testing"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// The lock-order benchmarks (docs/benchmarks.md, "Lock order (drop-in)").
// BenchmarkOrderHoldingNothing is BenchmarkLockUnlock's uncontended
// Lock+Unlock of a goroutine that holds no other lock: the held-lock
// tracking's cost. Compare it with the same benchmark built from the code
// before the tracking (see docs/benchmarks.md for the interleaved runs).
// BenchmarkOrderNested is Lock+Unlock of B while A is held, its edge
// A -> B known after the first: the nested acquire's cost, beside the same
// Lock+Unlock holding nothing in the same run.
func BenchmarkOrderHoldingNothing(b *testing.B) {
	b.Run("impl=sync", func(b *testing.B) { benchLockUnlock(b, new(gosync.Mutex)) })
	b.Run("impl=lockwatch", func(b *testing.B) { benchLockUnlock(b, new(lwsync.Mutex)) })
}

func benchNested(b *testing.B, a, m locker, nested bool) {
	deep(depth, func() {
		if nested {
			a.Lock()
			defer a.Unlock()
		}
		m.Lock() // the edge, once
		m.Unlock()
		b.ResetTimer()
		c0 := cpuNanos()
		for i := 0; i < b.N; i++ {
			m.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			m.Unlock()
		}
		reportCPU(b, c0)
	})
}

func BenchmarkOrderNested(b *testing.B) {
	b.Run("held=none/impl=sync", func(b *testing.B) { benchNested(b, new(gosync.Mutex), new(gosync.Mutex), false) })
	b.Run("held=one/impl=sync", func(b *testing.B) { benchNested(b, new(gosync.Mutex), new(gosync.Mutex), true) })
	b.Run("held=none/impl=lockwatch", func(b *testing.B) { benchNested(b, new(lwsync.Mutex), new(lwsync.Mutex), false) })
	b.Run("held=one/impl=lockwatch", func(b *testing.B) { benchNested(b, new(lwsync.Mutex), new(lwsync.Mutex), true) })
	b.Run("held=rlock/impl=lockwatch", func(b *testing.B) {
		rw := new(lwsync.RWMutex)
		benchNested(b, rw.RLocker(), new(lwsync.Mutex), true)
	})
}
