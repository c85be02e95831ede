package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// The load of BenchmarkAttach: loadProcs processes sharing loadLocks locks
// and loadGoroutines goroutines. Each process holds its share of the locks
// (lock k belongs to process k mod loadProcs) and has loadWaiters goroutines
// waiting for locks of the next process; the rest of its goroutines block on
// a channel.
const (
	loadProcs      = 16
	loadLocks      = 1000
	loadGoroutines = 10000
	loadWaiters    = 20
	loadIndexEnv   = "LOCKWATCH_CLI_TEST_INDEX"
)

// loadRole is one process of BenchmarkAttach's run, and the holder of
// BenchmarkDeathToFinding (index "hold").
func loadRole(string) int {
	a, err := probe.Start(probe.Options{Role: "load"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	r := a.Registry()
	ctx := context.Background()
	block := make(chan struct{})
	if os.Getenv(loadIndexEnv) == "hold" {
		m, err := r.Mutex("held")
		if err == nil {
			err = m.Lock(ctx)
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		<-block
	}
	me, _ := strconv.Atoi(os.Getenv(loadIndexEnv))
	started := 0
	locked := make(chan error)
	for k := me; k < loadLocks; k += loadProcs {
		m, err := r.Mutex(fmt.Sprintf("lock.%04d", k))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		started++
		go func() {
			locked <- m.Lock(ctx)
			<-block
		}()
	}
	for range started {
		if err := <-locked; err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	// Wait until every process holds its locks, or the waiters below
	// would take locks of a process that has not taken them yet.
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n')
	next := (me + 1) % loadProcs
	for i := range loadWaiters {
		m, err := r.Mutex(fmt.Sprintf("lock.%04d", next+i*loadProcs))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		started++
		go m.Lock(ctx)
	}
	for ; started < loadGoroutines/loadProcs; started++ {
		go func() { <-block }()
	}
	fmt.Println("ready")
	<-block
	return 0
}

// BenchmarkAttach is `lockwatch attach RUNDIR` on a run of 16 processes,
// 1,000 locks and 10,000 goroutines. "quiet": nothing to report, so no
// probe is asked; "stuck": every awaited lock is reported stuck
// (--stuck-after=1ns), so every process's probe is asked for its text dump.
func BenchmarkAttach(b *testing.B) {
	dir := runDir(b)
	var ins []io.WriteCloser
	var outs []*bufio.Reader
	for i := range loadProcs {
		_, in, out := child(b, "load", dir, probe.EnvDir+"="+dir, loadIndexEnv+"="+strconv.Itoa(i))
		expectLine(b, out, "locked")
		ins, outs = append(ins, in), append(outs, out)
	}
	for i := range loadProcs {
		ins[i].Write([]byte("go\n"))
		expectLine(b, outs[i], "ready")
	}
	// Every waiter goroutine has recorded its wait before the timing starts.
	awaitWaiters(b, dir, loadProcs*loadWaiters)
	for _, bc := range []struct {
		name string
		args []string
		code int
	}{
		{"quiet", nil, ExitOK},
		{"stuck", []string{"--stuck-after=1ns"}, ExitDeadlock},
	} {
		b.Run(bc.name, func(b *testing.B) {
			args := append([]string{"attach", "--probe-timeout=5s"}, bc.args...)
			args = append(args, dir)
			for b.Loop() {
				if code := Main(context.Background(), args, nil, io.Discard, io.Discard); code != bc.code {
					b.Fatalf("exit %d; want %d", code, bc.code)
				}
			}
		})
	}
}

// BenchmarkDeathToFinding measures, per iteration, the time from the
// SIGKILL of a lock's holder to the dead-holder finding in `watch`'s loop,
// with an interval of 10s: only the pidfd can make it fast.
func BenchmarkDeathToFinding(b *testing.B) {
	a := &app{stdout: io.Discard, stderr: io.Discard, output: "json", opts: report.Options{ProbeTimeout: time.Second}}
	var total time.Duration
	n := 0
	for b.Loop() {
		dir := runDir(b)
		holder, _, out := child(b, "load", dir, probe.EnvDir+"="+dir, loadIndexEnv+"=hold")
		expectLine(b, out, "ready")
		var killed time.Time
		found := make(chan time.Duration, 1)
		ctx, cancel := context.WithTimeout(context.Background(), probablyStillBlocked)
		err := a.monitor(ctx, dir, 10*time.Second, func(r *report.Report) bool {
			if killed.IsZero() {
				killed = time.Now()
				syscall.Kill(holder.Process.Pid, syscall.SIGKILL)
				return false
			}
			for _, f := range r.Findings {
				if f.Kind == report.DeadHolder && strings.HasPrefix(f.Lock, "held") {
					found <- time.Since(killed)
					return true
				}
			}
			return false
		})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		select {
		case d := <-found:
			total += d
			n++
		default:
			b.Fatalf("no finding within %v", probablyStillBlocked)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "ms/finding")
}

// awaitWaiters returns once the run in dir records at least n waiters, and
// fails b if it does not within probablyStillBlocked.
func awaitWaiters(b testing.TB, dir string, n int) {
	b.Helper()
	for deadline := time.Now().Add(probablyStillBlocked); ; {
		snap, err := arena.ReadSnapshot(dir)
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Waiters) >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d waiters recorded; want %d", len(snap.Waiters), n)
		}
		time.Sleep(time.Millisecond) // polling the arena; the condition is above
	}
}
