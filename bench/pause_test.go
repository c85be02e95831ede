//go:build delve

// The target's pause: how long a Go program with 10,000 goroutines is kept
// from running while it is read, measured from inside it (a goroutine that
// wakes every millisecond records the longest gap beyond that), for
// lockwatch's memory reader (`lockwatch attach PID`, a process of its own),
// Delve as a library (attach, every goroutine and its stack, detach: the
// target is stopped by ptrace meanwhile) and the runtime's own traceback of
// every goroutine (as SIGQUIT prints it), in one run:
//
//	cd bench && GOWORK=off go test -tags delve -run '^$' -bench BenchmarkPause -benchtime 5x -count 5 . | tee pause.txt
//
// It needs ptrace rights over a child (root, or kernel.yama.ptrace_scope 0
// or 1) for Delve. A build tag of its own keeps Delve out of the other
// benchmarks' builds.
package bench

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/native"
)

// pauseTarget is lockwatch's memory reader's test program with n idle
// goroutines, a 1 ms heartbeat, and the traceback on SIGUSR1.
type pauseTarget struct {
	cmd   *exec.Cmd
	lines *bufio.Reader
}

func buildTo(b *testing.B, dir, out, pkg string) string {
	b.Helper()
	exe := filepath.Join(dir, out)
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, pkg)
	cmd.Dir = ".." // lockwatch's own module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, o)
	}
	return exe
}

func startPause(b *testing.B, exe string, n int) *pauseTarget {
	b.Helper()
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
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	br := bufio.NewReader(stdout)
	if line, err := br.ReadString('\n'); line != "ready\n" {
		b.Fatalf("target said %q, %v", line, err)
	}
	go io.Copy(io.Discard, br)
	t := &pauseTarget{cmd: cmd, lines: bufio.NewReader(stderr)}
	t.worstGap(b) // reset
	return t
}

// line reads the target's next stderr line with prefix, and its number.
func (t *pauseTarget) line(b *testing.B, prefix string) int64 {
	line, err := t.lines.ReadString('\n')
	v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix+" ")
	n, perr := strconv.ParseInt(v, 10, 64)
	if err != nil || !ok || perr != nil {
		b.Fatalf("target's line %q, want %q: %v", line, prefix, err)
	}
	return n
}

// worstGap is the longest heartbeat gap beyond 1 ms since the last ask.
func (t *pauseTarget) worstGap(b *testing.B) time.Duration {
	t.cmd.Process.Signal(syscall.SIGUSR2)
	return time.Duration(t.line(b, "worst-gap-ns"))
}

// BenchmarkPause reads the target once per iteration with each reader and
// reports the worst gap its heartbeat saw over the iterations
// (target-worst-gap-ms), with the gap over as long a time with no reader
// beside it (idle-worst-gap-ms: the machine's own noise).
func BenchmarkPause(b *testing.B) {
	dir := b.TempDir()
	lw := buildTo(b, dir, "lockwatch", "./cmd/lockwatch")
	exe := buildTo(b, dir, "target", "./internal/diag/goproc/testdata/target")
	const n = 10_000
	t := startPause(b, exe, n)
	pid := t.cmd.Process.Pid
	readers := []struct {
		name string
		read func(b *testing.B)
	}{
		{"lockwatch-attach", func(b *testing.B) {
			out, err := exec.Command(lw, "attach", "-o", "json", strconv.Itoa(pid)).Output()
			if len(out) == 0 {
				b.Fatalf("lockwatch attach: %v", err)
			}
		}},
		{"delve", func(b *testing.B) {
			grp, err := native.Attach(pid, nil, nil)
			if err != nil {
				b.Fatalf("delve attach: %v", err)
			}
			gs, _, err := proc.GoroutinesInfo(grp.Selected, 0, 0)
			if err != nil || len(gs) < n {
				b.Fatalf("delve: %d goroutines, %v", len(gs), err)
			}
			for _, g := range gs {
				proc.GoroutineStacktrace(grp.Selected, g, 50, 0)
			}
			if err := grp.Detach(false); err != nil {
				b.Fatalf("delve detach: %v", err)
			}
		}},
		{"runtime-traceback", func(b *testing.B) {
			t.cmd.Process.Signal(syscall.SIGUSR1)
			if t.line(b, "dumped") == 0 {
				b.Fatal("an empty traceback")
			}
		}},
	}
	for _, rd := range readers {
		b.Run("reader="+rd.name, func(b *testing.B) {
			t.worstGap(b)
			start := time.Now()
			for b.Loop() {
				rd.read(b)
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(t.worstGap(b).Microseconds())/1000, "target-worst-gap-ms")
			time.Sleep(elapsed)
			b.ReportMetric(float64(t.worstGap(b).Microseconds())/1000, "idle-worst-gap-ms")
		})
	}
}
