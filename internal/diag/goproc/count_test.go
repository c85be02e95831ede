package goproc_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
)

// TestCountBounded: Count of a target with 100,000 idle goroutines more
// than its own finds what Read finds (its goroutines, and the 8 blocked on
// its mutexes), and allocates a few hundred KiB doing so where Read's
// Image keeps every goroutine: Count's memory does not grow with the
// target.
func TestCountBounded(t *testing.T) {
	const n = 100_000
	tg := start(t, build(t, "default"), "-n", "100000")
	p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{Quick: true, NoStacks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	img := settled(t, p)
	goroutines, waiters := 0, 0
	for _, g := range img.Goroutines {
		if !g.System {
			goroutines++
		}
	}
	for _, l := range img.Locks {
		if l.Kind == "sync.Mutex" || l.Kind == "sync.RWMutex" {
			waiters += len(l.Waiters)
		}
	}
	if goroutines < n {
		t.Fatalf("Read found %d goroutines; want more than %d", goroutines, n)
	}

	// A Process of its own, whose scratch memory Read has not grown.
	q, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := q.Count(context.Background())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if c.Goroutines != goroutines || c.LockWaiters != waiters || c.Inconsistent != 0 {
		t.Errorf("Count: %+v; want %d goroutines and %d lock waiters, as Read found", c, goroutines, waiters)
	}
	const bound = 4 << 20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Errorf("Count allocated %d KiB for %d goroutines; want at most %d KiB, whatever their number", alloc>>10, goroutines, bound>>10)
	} else {
		t.Logf("Count allocated %d KiB for %d goroutines", alloc>>10, goroutines)
	}
}

// BenchmarkCount is Count beside Read, its peer, of one target with
// 100,000 idle goroutines more than its own, each on a Process of its own
// opened once: B/op is what one look allocates (Read's Image keeps every
// goroutine; Count keeps none).
func BenchmarkCount(b *testing.B) {
	tg := start(b, build(b, "default"), "-n", "100000")
	for _, look := range []string{"read", "count"} {
		b.Run(look, func(b *testing.B) {
			p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{Quick: true, NoStacks: true, NoChans: true})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.ReportAllocs()
			for b.Loop() {
				if look == "read" {
					_, err = p.Read(context.Background())
				} else {
					_, err = p.Count(context.Background())
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
