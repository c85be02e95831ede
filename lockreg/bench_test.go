package lockreg

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// benchDepth is how deep below the benchmark function each acquire is
// called, so that the recorded stack has realistic depth.
const benchDepth = 10

func benchMutex(b *testing.B, o Options) *Mutex {
	dir := filepath.Join(b.TempDir(), "run")
	r, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	m, err := r.Mutex("bench")
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkLockUnlock is an uncontended Lock+Unlock with the full record:
// holder record (pid, start, goroutine id, stack id, time), a captured and
// interned stack, and two events.
func BenchmarkLockUnlock(b *testing.B) { benchLockUnlock(b, Options{}) }

// BenchmarkLockUnlockNoRecord is the same with Options.NoRecord.
func BenchmarkLockUnlockNoRecord(b *testing.B) { benchLockUnlock(b, Options{NoRecord: true}) }

func benchLockUnlock(b *testing.B, o Options) {
	m := benchMutex(b, o)
	ctx := context.Background()
	deep(benchDepth, func() {
		b.ResetTimer()
		c0 := cpuNanos()
		for i := 0; i < b.N; i++ {
			if err := m.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := m.Unlock(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
	})
}

// cpuNanos is the CPU time this process has used. On a machine shared
// with other work a benchmark's wall time (ns/op) also counts the time the
// others ran; its CPU time (cpu-ns/op, reported beside it) does not.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSyncMutex is the floor, measured in the same run.
func BenchmarkSyncMutex(b *testing.B) {
	var mu sync.Mutex
	deep(benchDepth, func() {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
	})
}

// BenchmarkContendedProcesses: this process and a child process take the
// same lock in a loop; ns/op is per Lock+Unlock of this process.
func BenchmarkContendedProcesses(b *testing.B) {
	for _, rec := range []bool{true, false} {
		b.Run("record="+strconv.FormatBool(rec), func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "run")
			o := Options{NoRecord: !rec}
			r, err := Open(dir, o)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			m, _ := r.Mutex("test.lock")
			c := startRoleB(b, dir, rec)
			c.expect("spinning")
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := m.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				_ = m.Unlock()
			}
			b.StopTimer()
			c.kill()
		})
	}
}

// BenchmarkContendedGoroutines is the sync.Mutex counterpart: two goroutines.
func BenchmarkContendedGoroutines(b *testing.B) {
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			//lint:ignore SA2001 an empty critical section is what is measured
			mu.Unlock()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mu.Lock()
		//lint:ignore SA2001 an empty critical section is what is measured
		mu.Unlock()
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
}

// BenchmarkLockUnlockNested is BenchmarkLockUnlock while the goroutine
// holds another lock, whose edge to this one is known after the first
// iteration: the difference is what lock ordering adds to a nested
// acquire (reading the holder record of the lock held, one probe of the
// known edges).
func BenchmarkLockUnlockNested(b *testing.B) {
	m := benchMutex(b, Options{})
	outer, err := m.r.Mutex("outer")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := outer.Lock(ctx); err != nil {
		b.Fatal(err)
	}
	defer outer.Unlock()
	deep(benchDepth, func() {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := m.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := m.Unlock(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOrderTracking is what lock ordering adds to a Lock+Unlock with
// the record, alone (the rest of the acquire is not run): holds=none, a
// goroutine that holds no other lock (read its bucket, claim a cell, clear
// it); holds=1-known, one that holds another lock whose edge to this one
// is known (plus the holder record of the lock held and a probe of the
// known edges).
func BenchmarkOrderTracking(b *testing.B) {
	for _, nested := range []bool{false, true} {
		name := "holds=none"
		if nested {
			name = "holds=1-known"
		}
		b.Run(name, func(b *testing.B) {
			m := benchMutex(b, Options{})
			r := m.r
			if nested {
				outer, err := r.Mutex("outer")
				if err != nil {
					b.Fatal(err)
				}
				if err := outer.Lock(context.Background()); err != nil {
					b.Fatal(err)
				}
				defer outer.Unlock()
			}
			goid := curGoid()
			r.heldAcquired(m.idx, goid, 1) // the edge is known from here on
			r.heldReleased(m.idx, goid)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.heldAcquired(m.idx, goid, 1)
				r.heldReleased(m.idx, goid)
			}
		})
	}
}

// siteLevels is how deep atSite descends: 2^siteLevels distinct stacks.
const siteLevels = 14

// atSite calls f siteLevels calls deep, through siteA or siteB at each
// level as the bits of site say: each site is a distinct stack of the same
// depth, so that many call sites cost the walk a single site costs.
//
//go:noinline
func atSite(site uint32, f func()) { siteA(siteLevels, site, f) }

//go:noinline
func siteA(level int, site uint32, f func()) {
	switch {
	case level == 0:
		f()
	case site&1 == 0:
		siteA(level-1, site>>1, f)
	default:
		siteB(level-1, site>>1, f)
	}
}

//go:noinline
func siteB(level int, site uint32, f func()) {
	switch {
	case level == 0:
		f()
	case site&1 == 0:
		siteA(level-1, site>>1, f)
	default:
		siteB(level-1, site>>1, f)
	}
}

// BenchmarkLockUnlockSites is BenchmarkLockUnlock from many call sites:
// each acquire comes from the next of sites distinct stacks (all of the same
// depth), every one of them already in the stack dictionary. sites=1 is the
// peer: the same descent from one site. What it shows is whether a process
// with thousands of call sites still finds each of its stacks known on the
// fast path.
func BenchmarkLockUnlockSites(b *testing.B) {
	for _, sites := range []uint32{1, 4096, 16384} {
		b.Run("sites="+strconv.Itoa(int(sites)), func(b *testing.B) {
			m := benchMutex(b, Options{})
			ctx := context.Background()
			lockUnlock := func() {
				if err := m.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := m.Unlock(); err != nil {
					b.Fatal(err)
				}
			}
			// The first sites acquires put every stack into the
			// dictionary; the timer starts after them. One loop for both,
			// so that they are the same stacks.
			var c0 int64
			for i := -int(sites); i < b.N; i++ {
				if i == 0 {
					if n := dictLines(b, m.r); n < int(sites) {
						b.Fatalf("the dictionary holds %d stacks; want at least %d distinct sites", n, sites)
					}
					b.ResetTimer()
					c0 = cpuNanos()
				}
				atSite(uint32(i)&(sites-1), lockUnlock)
			}
			b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// dictLines counts the stacks in r's dictionary file.
func dictLines(b *testing.B, r *Registry) int {
	_, stacks, _ := arena.ProcessFiles(r.Dir(), r.Self())
	data, err := os.ReadFile(stacks)
	if err != nil {
		b.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}
