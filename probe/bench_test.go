package probe

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/stops"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"golang.org/x/sys/unix"
)

// BenchmarkGoroutinesRequest measures a goroutine-dump request end to end
// (Client.Goroutines: connect, request, capture, answer, read) against this
// process's probe with 10,000 goroutines blocked, 10 of them waiting for a
// registry lock. It reports:
//
//   - stw-ms: the longest stop of the world meanwhile, as the runtime
//     records it (/sched/pauses/total/*): how long every other goroutine
//     of the process stood still at once;
//   - gap-ms: the longest a goroutine reading the clock in a loop went
//     without reading it: stops of the world, plus the CPU the dump and the
//     client take from it on a small machine;
//   - dump-KiB: the dump's size.
//
// Format "none" sends an info request instead: the pauses seen without any
// dump (scheduling, GC).
func BenchmarkGoroutinesRequest(b *testing.B) {
	for _, format := range []string{"none", probewire.FormatProto, probewire.FormatText, probewire.FormatTrace} {
		b.Run(fmt.Sprintf("format=%s/goroutines=10000", format), func(b *testing.B) {
			a, err := Start(Options{Dir: b.TempDir() + "/run"})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			defer blockGoroutines(b, a, 10_000, 10)()
			cl := &probeclient.Client{Path: a.SocketPath(), Timeout: time.Minute}
			ctx := context.Background()
			var size int
			before := stops.Read()
			stopMeter := meterPauses()
			for b.Loop() {
				if format == "none" {
					if _, err := cl.Info(ctx); err != nil {
						b.Fatal(err)
					}
					continue
				}
				var d *probewire.Dump
				var err error
				if format == probewire.FormatTrace {
					d, err = cl.GoroutineTrace(ctx)
				} else {
					d, err = cl.Goroutines(ctx, format == probewire.FormatText)
				}
				if err != nil {
					b.Fatal(err)
				}
				size = len(d.Data)
			}
			gap := stopMeter()
			b.ReportMetric(float64(stops.Longest(before, stops.Read()))/float64(time.Millisecond), "stw-ms")
			b.ReportMetric(float64(gap)/float64(time.Millisecond), "gap-ms")
			if format != "none" {
				b.ReportMetric(float64(size)/(1<<10), "dump-KiB")
			}
		})
	}
}

// blockGoroutines starts n goroutines, of which waiters wait for a lock of
// a's registry and the others in a channel receive a few calls deep, and
// returns a function that ends them all.
func blockGoroutines(b *testing.B, a *Agent, n, waiters int) (end func()) {
	m, err := a.Registry().Mutex("bench.lock")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Lock(ctx); err != nil {
		b.Fatal(err)
	}
	var running, ended sync.WaitGroup
	running.Add(n)
	ended.Add(n)
	for i := range n {
		go func() {
			defer ended.Done()
			if i < waiters {
				running.Done()
				if m.Lock(ctx) == nil {
					b.Error("acquired a held lock")
				}
				return
			}
			nested(3, func() {
				running.Done()
				<-ctx.Done()
			})
		}()
	}
	running.Wait()
	return func() {
		cancel()
		ended.Wait()
		if err := m.Unlock(); err != nil {
			b.Error(err)
		}
	}
}

// nested calls f depth calls deep, for stacks of some depth.
func nested(depth int, f func()) {
	if depth == 0 {
		f()
		return
	}
	nested(depth-1, f)
}

// meterPauses starts a goroutine that reads the clock in a loop and keeps
// the longest gap between two readings: the longest time the process's
// goroutines were stopped (or this one was not scheduled). The function it
// returns stops the goroutine and returns that gap.
func meterPauses() (stop func() time.Duration) {
	var quit atomic.Bool
	longest := make(chan time.Duration)
	go func() {
		var gap time.Duration
		for prev := time.Now(); !quit.Load(); {
			now := time.Now()
			gap = max(gap, now.Sub(prev))
			prev = now
		}
		longest <- gap
	}()
	return func() time.Duration {
		quit.Store(true)
		return <-longest
	}
}

// quietMainEnv names a build of testdata/quiet against another version of
// the probe (the main branch's), measured beside this one by
// BenchmarkProbeCPU as program=other.
const quietMainEnv = "LOCKWATCH_BENCH_QUIET_OTHER"

// BenchmarkProbeCPU measures what a program costs with the probe started
// (probe.Start) and without it: an idle program (one goroutine sleeps) and
// a busy one (two goroutines compute for 2 ms and sleep for 3, again and
// again), run for a second per iteration; cpu-us/s is the CPU time of all
// its threads (from /proc/PID/task/*/schedstat) per second of wall time.
// The probe's loop wakes every quarter second to second, looks at the
// program (deadcheck: in a busy program, runtime/metrics alone say it is
// awake), and each wake keeps the runtime's monitor busy for some
// milliseconds.
func BenchmarkProbeCPU(b *testing.B) {
	bin := buildProgram(b, "quiet", false)
	programs := []struct{ name, bin, arg string }{{"none", bin, "none"}, {"probe", bin, "probe"}}
	if other := os.Getenv(quietMainEnv); other != "" {
		programs = append(programs, struct{ name, bin, arg string }{"other", other, "probe"})
	}
	for _, load := range []string{"idle", "busy"} {
		for _, p := range programs {
			b.Run("load="+load+"/program="+p.name, func(b *testing.B) {
				c := startProgram(b, p.bin, p.arg, load)
				c.ready(b)
				time.Sleep(5 * time.Second) // past the start's own work (the scavenger returns its memory) and the probe's first looks
				pid := c.cmd.Process.Pid
				loop := loopThread(pid)
				b.ResetTimer()
				var cpu, loopCPU time.Duration
				begin := time.Now()
				for i := 0; i < b.N; i++ {
					before, loopBefore := threadsCPU(b, pid), threadCPU(pid, loop)
					time.Sleep(time.Second)
					cpu += threadsCPU(b, pid) - before
					loopCPU += threadCPU(pid, loop) - loopBefore
				}
				wall := time.Since(begin)
				b.ReportMetric(float64(cpu.Microseconds())/wall.Seconds(), "cpu-us/s")
				b.ReportMetric(float64(loopCPU.Microseconds())/wall.Seconds(), "loop-us/s")
			})
		}
	}
}

// loopThread finds the probe's loop among pid's threads: the one that
// waits in ppoll(2), where it spends nearly all its time (0 if none does
// within a second, as in a program without this probe).
func loopThread(pid int) int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	for range 100 {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(dir + "/" + e.Name() + "/syscall")
			if f := strings.Fields(string(b)); err == nil && len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_PPOLL) {
				tid, _ := strconv.Atoi(e.Name())
				return tid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// threadCPU is the CPU time of pid's thread tid (0 for none).
func threadCPU(pid, tid int) time.Duration {
	if tid == 0 {
		return 0
	}
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
	var ns int64
	if err == nil {
		_, _ = fmt.Sscan(string(s), &ns)
	}
	return time.Duration(ns)
}

// threadsCPU is the CPU time of pid's threads, from their schedstat files.
func threadsCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, e := range ents {
		s, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // ended: its time is lost, a few microseconds
		}
		var ns int64
		if _, err := fmt.Sscan(string(s), &ns); err != nil {
			b.Fatalf("%s: %q: %v", e.Name(), s, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}
