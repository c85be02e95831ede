package inproc_test

import (
	"runtime"
	"syscall"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	lwsync "github.com/lockwatch/lockwatch/sync"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// global is a mutex in the data segment, not the heap.
var global lwsync.Mutex

func TestGlobalMutex(t *testing.T) {
	global.Lock()
	found := false
	for _, l := range inproc.Take(0).Locks {
		found = found || (l.Holder.Goroutine != 0 && l.Kind == inproc.KindMutex)
	}
	global.Unlock()
	if !found {
		t.Error("a held global Mutex is not in the snapshot")
	}
}

// TestTakeBounded: with more held locks than the bound, Take lists the
// bound and counts the rest.
func TestTakeBounded(t *testing.T) {
	mus := make([]lwsync.Mutex, 50)
	for i := range mus {
		mus[i].Lock()
	}
	s := inproc.Take(20)
	if len(s.Locks) != 20 || s.Truncated < 30 {
		t.Errorf("%d listed, %d truncated; want 20, at least 30", len(s.Locks), s.Truncated)
	}
	for i := range mus {
		mus[i].Unlock()
	}
	runtime.KeepAlive(mus)
}

// BenchmarkTake100k reads the records with 100,000 live mutexes, 1,000 of
// them held. Take stops nothing and takes no lock; an acquire never waits
// for it.
func BenchmarkTake100k(b *testing.B) {
	type item struct {
		mu lwsync.Mutex
		n  int
	}
	items := make([]*item, 100000)
	for i := range items {
		items[i] = new(item)
		items[i].mu.Lock()
		items[i].n++
		if i%100 != 0 {
			items[i].mu.Unlock()
		}
	}
	c0 := cpuNanos()
	for b.Loop() {
		if s := inproc.Take(0); len(s.Locks) != 1000 {
			b.Fatalf("%d locks listed; want 1000", len(s.Locks))
		}
	}
	b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	for i := 0; i < len(items); i += 100 {
		items[i].mu.Unlock()
	}
}

// BenchmarkFirstLock is the first Lock of a new mutex (each in an object
// of its own): nothing registers it, so it costs what any Lock does.
func BenchmarkFirstLock(b *testing.B) {
	type item struct {
		mu lwsync.Mutex
		n  int
	}
	keep := make([]*item, 0, 1<<16)
	c0 := cpuNanos()
	defer func() { b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		it := new(item)
		it.mu.Lock()
		it.n++
		it.mu.Unlock()
		if len(keep) < cap(keep) {
			keep = append(keep, it)
		}
	}
}

// cpuNanos is the CPU time this process has used: on a machine shared with
// other work, a benchmark's wall time counts the time others ran too.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
