package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/stops"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// The shape of a stuck run for BenchmarkAttachPause, in each process's
// environment: pauseIndexEnv is the process's index of pauseProcsEnv
// processes, each with pauseGoroutinesEnv goroutines.
const (
	pauseIndexEnv      = "LOCKWATCH_CLI_PAUSE_INDEX"
	pauseProcsEnv      = "LOCKWATCH_CLI_PAUSE_PROCS"
	pauseGoroutinesEnv = "LOCKWATCH_CLI_PAUSE_GOROUTINES"
	// pauseWaiters goroutines of each process wait for the lock of the next.
	pauseWaiters = 10
)

// pauseRole is one process of BenchmarkAttachPause's stuck run: one of its
// goroutines takes the lock "pause.<index>" and blocks, a few calls deep,
// holding it; once told "go" on stdin, pauseWaiters goroutines wait for
// the next process's lock and the rest, up to the process's number of
// goroutines, block on a channel. Then it answers pauseCommands. Its
// probe's stuck hook is off (quietProbe).
func pauseRole(dir string) int {
	a, err := probe.Start(quietProbe(dir, "pause"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	me, _ := strconv.Atoi(os.Getenv(pauseIndexEnv))
	procs, _ := strconv.Atoi(os.Getenv(pauseProcsEnv))
	goroutines, _ := strconv.Atoi(os.Getenv(pauseGoroutinesEnv))
	r, ctx := a.Registry(), context.Background()
	mine, err := r.Mutex(fmt.Sprintf("pause.%02d", me))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	block := make(chan struct{})
	locked := make(chan error)
	go func() {
		err := mine.Lock(ctx)
		locked <- err
		if err == nil {
			blockDeep(3, block) // the stuck holder
		}
	}()
	if err := <-locked; err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("locked")
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	next, err := r.Mutex(fmt.Sprintf("pause.%02d", (me+1)%procs))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for range pauseWaiters {
		go next.Lock(ctx)
	}
	for range max(goroutines-pauseWaiters-1, 0) {
		go blockDeep(3, block)
	}
	fmt.Println("ready")
	pauseCommands(in)
	return 0
}

// quietProbe are the options of a benchmark target's probe in the run in
// dir: its stuck hooks (lockreg's and the drop-in's) would otherwise take
// their own text dumps, ten seconds into the wait, in the middle of the
// measurements.
func quietProbe(dir, role string) probe.Options {
	return probe.Options{Dir: dir, Role: role, Registry: lockreg.Options{StuckAfter: time.Hour}}
}

// blockDeep blocks on ch, depth calls deep.
func blockDeep(depth int, ch chan struct{}) {
	if depth == 0 {
		<-ch
		return
	}
	blockDeep(depth-1, ch)
}

// pauseCommands answers lines on in until it ends: "mark" starts a
// measurement ("marked"); "pause" says the longest stop of the world since
// the mark, of the GC's and of the others ("pause GC OTHER", nanoseconds),
// measured by the process's own runtime; "cpu" says the CPU time the
// process has used ("cpu NS", user + system, getrusage).
func pauseCommands(in *bufio.Reader) {
	before := stops.Read()
	for {
		line, err := in.ReadString('\n')
		switch strings.TrimSpace(line) {
		case "mark":
			before = stops.Read()
			fmt.Println("marked")
		case "pause":
			now := stops.Read()
			fmt.Println("pause", int64(stops.Longest(before[:1], now[:1])), int64(stops.Longest(before[1:], now[1:])))
		case "cpu":
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			fmt.Println("cpu", ru.Utime.Nano()+ru.Stime.Nano())
		}
		if err != nil {
			select {} // stdin closed: the benchmark ends it
		}
	}
}

// targets are the processes a pause benchmark attaches to, with their
// stdin and stdout for pauseCommands.
type targets struct {
	ins  []io.Writer
	outs []*bufio.Reader
}

// mark starts a pause measurement in every target.
func (ts targets) mark(b *testing.B) {
	for i := range ts.ins {
		fmt.Fprintln(ts.ins[i], "mark")
		expectLine(b, ts.outs[i], "marked")
	}
}

// pauses are the longest stops of the world of each target since the
// mark: the GC's and the others.
func (ts targets) pauses(b *testing.B) (gc, other []time.Duration) {
	for i := range ts.ins {
		fmt.Fprintln(ts.ins[i], "pause")
		line, err := ts.outs[i].ReadString('\n')
		var g, o int64
		if _, perr := fmt.Sscanf(line, "pause %d %d", &g, &o); err != nil || perr != nil {
			b.Fatalf("target %d said %q (%v); want its pauses", i, line, err)
		}
		gc, other = append(gc, time.Duration(g)), append(other, time.Duration(o))
	}
	return gc, other
}

// attachModes are the ways of taking live stacks compared in one run: the
// old (text dumps, every probe at once, every process), execution traces
// of every process (at most report.DefaultProbeConcurrency probes at once,
// and with twice as many), the default (traces of the first
// report.DefaultLiveStacks processes, the others' stacks from their
// records), and, as the machine's baseline, nothing to report (no stacks
// asked: the registry, the drop-in mutexes, the liveness checks).
var attachModes = []struct {
	name    string
	args    []string
	source  string // of the stuck holders' live stacks; "": nothing stuck
	bounded bool   // live stacks of report.DefaultLiveStacks processes at most
}{
	{"old-text-all-at-once", []string{"--stuck-after=1ns", "--text-dumps", "--probe-concurrency=1000", "--live-stacks=0"}, "probe-text", false},
	{"trace-every-process", []string{"--stuck-after=1ns", "--live-stacks=0"}, "probe-trace", false},
	{"trace-every-process-16-at-once", []string{"--stuck-after=1ns", "--probe-concurrency=16", "--live-stacks=0"}, "probe-trace", false},
	{"default-trace-bounded", []string{"--stuck-after=1ns"}, "probe-trace", true},
	{"quiet-nothing-stuck", []string{"--stuck-after=1h"}, "", false},
}

// attachPause runs `lockwatch attach` (the static binary, in a process
// of its own) on the run in dir, in each mode (--stuck-after=1ns: every
// awaited lock's holder is stuck), and
// reports its wall time, its peak resident size (rusage), and the longest
// stop of the world any target counted meanwhile (target-pause-ms; split
// into the GC's, max-gc-ms, and the others', max-other-ms, with the median
// of the targets' longest, median-other-ms). Each report must give
// every stuck holder's live stack (wantLive rows), from the mode's source,
// or, in the bounded mode, wantLiveBounded of them.
func attachPause(b *testing.B, dir string, ts targets, wantLive, wantLiveBounded int) {
	bin := lockwatchBin(b)
	for _, mode := range attachModes {
		b.Run(mode.name, func(b *testing.B) {
			var wall time.Duration
			var rss int64
			var gcs, others []time.Duration
			n := 0
			for b.Loop() {
				ts.mark(b)
				args := append([]string{"attach", "--probe-timeout=20s", "-o", "json"}, mode.args...)
				m := measure(b, bin, nil, append(args, dir)...)
				gc, other := ts.pauses(b)
				gcs, others = append(gcs, gc...), append(others, other...)
				want, wantLive := ExitDeadlock, wantLive
				switch {
				case mode.source == "":
					want, wantLive = ExitOK, 0
				case mode.bounded:
					wantLive = min(wantLive, wantLiveBounded)
				}
				if m.code != want {
					b.Fatalf("attach: exit %d; want %d: %s", m.code, want, m.stderr)
				}
				r := readReport(b, []byte(m.stdout))
				live := 0
				for _, s := range r.Stacks {
					if s.Role == "holder" && s.Source == mode.source {
						live++
					}
				}
				if live != wantLive {
					b.Fatalf("%d holders' live stacks from %s; want %d (notes %q)", live, mode.source, wantLive, r.Notes)
				}
				wall += m.wall
				rss = max(rss, m.maxRSS)
				n++
			}
			b.ReportMetric(float64(wall.Microseconds())/float64(n)/1000, "wall-ms")
			b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			slices.Sort(gcs)
			slices.Sort(others)
			b.ReportMetric(ms(max(others[len(others)-1], gcs[len(gcs)-1])), "target-pause-ms")
			b.ReportMetric(ms(others[len(others)-1]), "max-other-ms")
			b.ReportMetric(ms(others[len(others)/2]), "median-other-ms")
			b.ReportMetric(ms(gcs[len(gcs)-1]), "max-gc-ms")
		})
	}
}

// BenchmarkAttachPause is issue 12's stuck run: 64 processes of 1,000
// goroutines each, every process holding a lock that 10 goroutines of the
// previous one wait for, all reported stuck; `lockwatch attach` asks every
// probe for its stuck holder's live stack. Old (text dumps, all probes at
// once) against new (execution traces, at most 8 probes at once), in one
// run. Metrics: wall-ms (mean), peak-RSS-MiB (lockwatch's, max),
// target-pause-ms (the longest stop of the world any target's runtime
// counted during the attaches: the upper bound of its histogram bucket).
func BenchmarkAttachPause(b *testing.B) {
	const procs, goroutines = 64, 1000
	dir := runDir(b)
	var ts targets
	for i := range procs {
		_, in, out := child(b, "pause", dir, pauseIndexEnv+"="+strconv.Itoa(i),
			pauseProcsEnv+"="+strconv.Itoa(procs), pauseGoroutinesEnv+"="+strconv.Itoa(goroutines))
		expectLine(b, out, "locked")
		ts.ins, ts.outs = append(ts.ins, in), append(ts.outs, out)
	}
	for i := range procs {
		fmt.Fprintln(ts.ins[i], "go")
		expectLine(b, ts.outs[i], "ready")
	}
	awaitWaiters(b, dir, procs*pauseWaiters)
	attachPause(b, dir, ts, procs, report.DefaultLiveStacks) // a holder per process
}

// BenchmarkAttachPauseDropIn is issue 9's attach figure: one process with
// 100,000 live drop-in mutexes (1,000 held, 100 of them awaited) and
// 10,000 goroutines, every awaited one reported stuck (manyRole with
// waiters, its probe started by itself with quietProbe); metrics as
// BenchmarkAttachPause's.
func BenchmarkAttachPauseDropIn(b *testing.B) {
	dir := runDir(b)
	_, in, out := child(b, "many", dir, manyWaitersEnv+"=100")
	expectLine(b, out, "ready")
	attachPause(b, dir, targets{ins: []io.Writer{in}, outs: []*bufio.Reader{out}}, 100, 100) // one process
}

// BenchmarkLiveStackCost is what each way of reading a process's live
// stacks costs the process: one process of BenchmarkAttachPause's shape
// (1,000 goroutines, a stuck holder, 10 waiters), asked b.N times over its
// control socket, one request at a time. Metrics: target-cpu-ms (the
// target's CPU time per request, user + system, from its own getrusage),
// and the request's wall time (ns/op). "info" is the floor: a request that
// reads nothing. Is the goroutine profile the cheap first step? At 1,000
// goroutines it costs its process about what the trace does (the trace's
// cost is mostly the runtime tracer's fixed setup), and it has no
// goroutine ids, so the report asks a stuck holder's process for the trace
// alone.
func BenchmarkLiveStackCost(b *testing.B) {
	dir := runDir(b)
	_, in, out := child(b, "pause", dir, pauseIndexEnv+"=0", pauseProcsEnv+"=1", pauseGoroutinesEnv+"=1000")
	expectLine(b, out, "locked")
	fmt.Fprintln(in, "go")
	expectLine(b, out, "ready")
	procs, err := arena.ReadProcesses(dir)
	if err != nil || len(procs) != 1 {
		b.Fatalf("%d processes in the run (%v); want 1", len(procs), err)
	}
	cl := &probeclient.Client{Path: probeclient.SocketPath(dir, procs[0].Identity()), Timeout: 20 * time.Second}
	cpu := func() time.Duration {
		fmt.Fprintln(in, "cpu")
		line, err := out.ReadString('\n')
		var ns int64
		if _, perr := fmt.Sscanf(line, "cpu %d", &ns); err != nil || perr != nil {
			b.Fatalf("target said %q (%v); want its CPU time", line, err)
		}
		return time.Duration(ns)
	}
	ctx := context.Background()
	for _, way := range []string{"info", "profile", "trace", "text"} {
		b.Run(way, func(b *testing.B) {
			c0 := cpu()
			for b.Loop() {
				var err error
				switch way {
				case "info":
					_, err = cl.Info(ctx)
				case "profile":
					_, err = cl.Goroutines(ctx, false)
				case "trace":
					_, err = cl.GoroutineTrace(ctx)
				case "text":
					_, err = cl.Goroutines(ctx, true)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpu()-c0)/float64(b.N)/1e6, "target-cpu-ms")
		})
	}
}
