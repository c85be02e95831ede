package goproc_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"golang.org/x/sys/unix"
)

// heartbeatTarget is the target with n idle goroutines more and a 1 ms
// heartbeat: its worst scheduling gap is how long it was kept from
// running.
type heartbeatTarget struct {
	*target
	gaps *bufio.Reader
}

func startHeartbeat(b *testing.B, n int) *heartbeatTarget {
	b.Helper()
	exe := build(b, "default")
	cmd := exec.Command(exe, "-n", strconv.Itoa(n), "-heartbeat", "1ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	tg := &heartbeatTarget{target: &target{cmd: cmd, done: make(chan struct{})}, gaps: bufio.NewReader(stderr)}
	b.Cleanup(func() { cmd.Process.Kill(); <-tg.done })
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	if line != "ready\n" {
		b.Fatalf("target said %q, %v", line, err)
	}
	go func() { io.Copy(io.Discard, br); cmd.Wait(); close(tg.done) }()
	tg.worstGap(b) // reset
	return tg
}

// worstGap asks the target for the worst heartbeat gap since the last
// ask (SIGUSR2), and resets it.
func (tg *heartbeatTarget) worstGap(b *testing.B) time.Duration {
	tg.cmd.Process.Signal(syscall.SIGUSR2)
	line, err := tg.gaps.ReadString('\n')
	ns, ok := strings.CutPrefix(strings.TrimSpace(line), "worst-gap-ns ")
	n, perr := strconv.ParseInt(ns, 10, 64)
	if err != nil || !ok || perr != nil {
		b.Fatalf("target's gap line %q: %v", line, err)
	}
	return time.Duration(n)
}

// BenchmarkAttach is a whole attach from memory of a target with N idle
// goroutines besides its 11 stuck ones: open the binary, read every
// goroutine, its stack and its waits, close. Metrics: the target's worst
// scheduling gap during the reads (it is never stopped; the gap is the
// machine's own scheduling noise plus whatever the reads cost it), and
// the bytes and system calls of one read. "idle" is the same gap measured
// over the same time with no reader, beside it.
func BenchmarkAttach(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			tg := startHeartbeat(b, n)
			pid := tg.cmd.Process.Pid
			// reader=memory-nochans is the same without the channels of
			// the goroutines blocked on channels (every idle one here):
			// their cost, beside it.
			for _, noChans := range []bool{false, true} {
				name := "reader=memory"
				if noChans {
					name += "-nochans"
				}
				b.Run(name, func(b *testing.B) {
					tg.worstGap(b)
					var st goproc.Stats
					start, cpu0 := time.Now(), cpuTime()
					for b.Loop() {
						p, err := goproc.Attach(pid, goproc.Options{NoChans: noChans})
						if err != nil {
							b.Fatal(err)
						}
						img, err := p.Read(context.Background())
						if err != nil || len(img.Goroutines) < n {
							b.Fatalf("read %v goroutines, %v", len(img.Goroutines), err)
						}
						st = p.Stats()
						p.Close()
					}
					elapsed := time.Since(start)
					// CPU time: what the machine's load does not change.
					b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
					b.ReportMetric(float64(tg.worstGap(b).Microseconds())/1000, "target-worst-gap-ms")
					b.ReportMetric(float64(st.Bytes), "bytes-read/op")
					b.ReportMetric(float64(st.Calls), "readv-calls/op")
					// Beside it: the gap with no reader, over as long.
					time.Sleep(elapsed)
					b.ReportMetric(float64(tg.worstGap(b).Microseconds())/1000, "idle-worst-gap-ms")
				})
			}
		})
	}
}

// BenchmarkSIGQUITDump is the runtime's own dump of the same target: the
// time from SIGQUIT to the end of the dump, for which the target's world
// is stopped (and then it exits).
func BenchmarkSIGQUITDump(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				cmd := exec.Command(build(b, "default"), "-n", strconv.Itoa(n))
				stdout, _ := cmd.StdoutPipe()
				stderr, _ := cmd.StderrPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				br := bufio.NewReader(stdout)
				if line, _ := br.ReadString('\n'); line != "ready\n" {
					b.Fatalf("target said %q", line)
				}
				b.StartTimer()
				cmd.Process.Signal(syscall.SIGQUIT)
				dump, _ := io.ReadAll(stderr)
				b.StopTimer()
				cmd.Wait()
				if !strings.Contains(string(dump), "main.idle") {
					b.Fatalf("no dump: %.200s", dump)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkAttachCLI is 'lockwatch attach -o json PID' as a user runs it,
// a process of its own: its wall time and its peak RSS (ru_maxrss).
func BenchmarkAttachCLI(b *testing.B) {
	lw := os.Getenv("LOCKWATCH_BIN")
	if lw == "" {
		b.Skip("set LOCKWATCH_BIN to a lockwatch binary (make build)")
	}
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			tg := startHeartbeat(b, n)
			tg.worstGap(b)
			var rss int64
			var cpu time.Duration
			for b.Loop() {
				cmd := exec.Command(lw, "attach", "-o", "json", strconv.Itoa(tg.cmd.Process.Pid))
				var out strings.Builder
				cmd.Stdout = &out
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				// Its peak RSS: VmHWM, polled until it exits (ru_maxrss
				// of a child counts the parent's memory it was forked
				// from).
				stop := make(chan struct{})
				hwm := make(chan int64)
				go func() {
					var peak int64
					for {
						if kb, ok := vmHWM(cmd.Process.Pid); ok {
							peak = max(peak, kb)
						}
						select {
						case <-stop:
							hwm <- peak
							return
						case <-time.After(time.Millisecond):
						}
					}
				}()
				err := cmd.Wait()
				close(stop)
				rss = max(rss, <-hwm)
				if out.Len() == 0 {
					b.Fatalf("attach: %v", err)
				}
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "lockwatch-cpu-ms/op")
			b.ReportMetric(float64(rss)/1024, "lockwatch-maxrss-MiB")
			b.ReportMetric(float64(tg.worstGap(b).Microseconds())/1000, "target-worst-gap-ms")
		})
	}
}

// cpuTime is this process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is a process's peak resident set, in KiB (/proc/PID/status).
func vmHWM(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// BenchmarkGapWindows tells whether a read keeps the target from running
// for 5 ms, beyond the machine's own scheduling noise: the target (10,000
// idle goroutines and a 1 ms heartbeat) runs on CPU 1 and the reader on
// CPU 0, so the reader does not compete for the target's processor, and
// the heartbeat's longest gap is taken over three kinds of window, in
// turn (read and idle each first every other time), each as long as the
// read:
//
//   - read: 'lockwatch attach -o json PID' (LOCKWATCH_BIN), or one
//     goproc Attach and Read when it is not set;
//   - idle: no reader (the machine's noise);
//   - stop: SIGSTOP, 6 ms, SIGCONT: the control, a stop just over the
//     bound (the heartbeat sees it less up to a period), which the measure
//     must see in every window.
//
// Metrics per kind: the share of windows with a gap of 5 ms or more, the
// median, 90th percentile and largest gap; and, which the machine's
// scheduling does not blur, the share of windows in which a thread of the
// target was seen stopped or blocked in the kernel, with the shortest and
// longest such span (its threads' states sampled from /proc on CPU 0 as
// often as they can be read: sample-step-* is, per window, the longest
// time between two samples). A reader that stopped the target for 5 ms or
// more at each read would have such a gap, and such a span, in every
// window, as the control does.
func BenchmarkGapWindows(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs: the target on one, the reader on the other")
	}
	if err := pin(os.Getpid(), 0); err != nil {
		b.Skip("cannot set CPU affinity: ", err)
	}
	tg := startHeartbeat(b, 10_000)
	pid := tg.cmd.Process.Pid
	if err := pin(pid, 1); err != nil {
		b.Fatal(err)
	}
	lw := os.Getenv("LOCKWATCH_BIN")
	read := func() {
		if lw != "" {
			cmd := exec.Command(lw, "attach", "-o", "json", strconv.Itoa(pid))
			if out, _ := cmd.Output(); len(out) == 0 {
				b.Fatal("lockwatch attach said nothing")
			}
			return
		}
		p, err := goproc.Attach(pid, goproc.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Read(context.Background()); err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
	const bound = 5 * time.Millisecond
	gaps := map[string][]time.Duration{}
	stopped := map[string][]time.Duration{}
	var steps []time.Duration // per window, the longest time between two samples
	window := func(kind string, f func()) time.Duration {
		tg.worstGap(b) // reset
		done := make(chan [2]time.Duration)
		quit := make(chan struct{})
		go func() { l, s := longestStopped(pid, quit); done <- [2]time.Duration{l, s} }()
		start := time.Now()
		f()
		d := time.Since(start)
		close(quit)
		ls := <-done
		stopped[kind] = append(stopped[kind], ls[0])
		steps = append(steps, ls[1])
		gaps[kind] = append(gaps[kind], tg.worstGap(b))
		return d
	}
	d := window("read", read) // a first read: how long one takes
	for i := 0; b.Loop(); i++ {
		// read and idle in turn, each first every other time.
		if i%2 == 0 {
			d = window("read", read)
			window("idle", func() { time.Sleep(d) })
		} else {
			window("idle", func() { time.Sleep(d) })
			d = window("read", read)
		}
		window("stop", func() {
			const stop = bound + time.Millisecond
			tg.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(stop)
			tg.cmd.Process.Signal(syscall.SIGCONT)
			time.Sleep(max(0, d-stop))
		})
	}
	for _, kind := range []string{"read", "idle", "stop"} {
		g := slices.Clone(gaps[kind])
		slices.Sort(g)
		over := 0
		for _, x := range g {
			if x >= bound {
				over++
			}
		}
		b.ReportMetric(100*float64(over)/float64(len(g)), kind+"-windows-over-5ms-%")
		b.ReportMetric(float64(g[len(g)/2].Microseconds())/1000, kind+"-median-gap-ms")
		b.ReportMetric(float64(g[len(g)*9/10].Microseconds())/1000, kind+"-p90-gap-ms")
		b.ReportMetric(float64(g[len(g)-1].Microseconds())/1000, kind+"-max-gap-ms")
		st := stopped[kind]
		seen := 0
		for _, x := range st {
			if x > 0 {
				seen++
			}
		}
		b.ReportMetric(100*float64(seen)/float64(len(st)), kind+"-windows-stopped-%")
		b.ReportMetric(float64(slices.Min(st).Microseconds())/1000, kind+"-min-stopped-ms")
		b.ReportMetric(float64(slices.Max(st).Microseconds())/1000, kind+"-max-stopped-ms")
	}
	slices.Sort(steps)
	b.ReportMetric(float64(steps[len(steps)/2].Microseconds())/1000, "sample-step-median-ms")
	b.ReportMetric(float64(steps[len(steps)*9/10].Microseconds())/1000, "sample-step-p90-ms")
}

// longestStopped samples the states of process pid's threads
// (/proc/PID/task/TID/stat) until quit, as often as it can, and returns
// the longest span during which a thread was stopped (T, t: a signal, a
// tracer) or blocked in the kernel (D: waiting on a lock of the kernel's,
// as its memory map's would be) in every sample, and the longest time
// between two samples (its resolution). Waiting for a CPU (R) is not
// counted: that is the machine's scheduling, which the gaps show.
func longestStopped(pid int, quit <-chan struct{}) (longest, step time.Duration) {
	tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var since, last time.Time // since: zero while none is stopped
	buf := make([]byte, 512)
	for {
		select {
		case <-quit:
			return longest, step
		default:
		}
		now := time.Now()
		if !last.IsZero() {
			step = max(step, now.Sub(last))
		}
		last = now
		any := false
		for _, t := range tids {
			f, err := os.Open(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
			if err != nil {
				continue
			}
			n, _ := f.Read(buf)
			f.Close()
			st := buf[:n]
			if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) {
				switch st[i+2] {
				case 'T', 't', 'D':
					any = true
				}
			}
		}
		switch {
		case any && since.IsZero():
			since = now
		case any:
			longest = max(longest, now.Sub(since))
		default:
			since = time.Time{}
		}
	}
}

// pin sets the CPU affinity of every thread of process pid to cpu (the
// threads it starts later inherit it).
func pin(pid, cpu int) error {
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, t := range tids {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return err
		}
	}
	return nil
}
