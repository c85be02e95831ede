package cli

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/report"
)

// startExample runs README.md's example program (examples/stuck) deadlocked
// in the given way, with no LOCKWATCH_DIR: its probe makes a run of its own,
// as a program started by hand does. It returns the program's pid once the
// program says "stuck".
func startExample(t *testing.T, way string) int {
	t.Helper()
	_, demo := bins(t)
	cmd := exec.Command(filepath.Join(filepath.Dir(demo), "stuck"), way)
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("stuck %s: stderr:\n%s", way, stderr.String())
		}
	})
	out := bufio.NewReader(stdout)
	expectLine(t, out, strconv.Itoa(cmd.Process.Pid))
	expectLine(t, out, "stuck")
	return cmd.Process.Pid
}

// attachExample attaches to the example's pid and returns the report; the
// run the example's probe made is removed with the test.
func attachExample(t *testing.T, pid int, args ...string) *report.Report {
	t.Helper()
	code, stdout, stderr := lockwatch(t, append([]string{"attach", strconv.Itoa(pid), "-o", "json"}, args...)...)
	if code != ExitDeadlock {
		t.Fatalf("attach: exit %d; want %d (deadlock)\n%s%s", code, ExitDeadlock, stdout, stderr)
	}
	r := readReport(t, []byte(stdout))
	t.Cleanup(func() { os.RemoveAll(r.Run) })
	if len(r.Findings) == 0 {
		t.Fatal("no finding")
	}
	return r
}

// TestExampleStuck: the program whose report README.md shows, which only
// changed its import line (and runs a probe), is diagnosed in each of the
// ways it deadlocks: the holder of queue.buf named, with where it took the
// lock and what it is doing now, and both waiters; the cycle over accounts
// and ledger; the two self-deadlocks; and the chain through both kinds of
// lock, from the killed holder of queue.wlock to the goroutines waiting for
// queue.buf, held by the one waiting for queue.wlock.
func TestExampleStuck(t *testing.T) {
	t.Run("holder", func(t *testing.T) {
		pid := startExample(t, "holder")
		// --stuck-after 1ns: the holder has held "long enough" at once,
		// rather than after the default 10 s.
		r := attachExample(t, pid, "--stuck-after", "1ns")
		f := r.Findings[0]
		if f.Kind != report.StuckHolder || f.Lock != "queue.buf" || f.LockKind != "mutex" || f.Holder == nil || f.Holder.PID != pid {
			t.Fatalf("finding %+v; want stuck-holder of mutex queue.buf held in pid %d", f, pid)
		}
		if f.Holder.Where == nil || f.Holder.Where.Func != "main.(*Queue).flush" {
			t.Errorf("holder took it at %+v; want main.(*Queue).flush", f.Holder.Where)
		}
		if !strings.Contains(f.Doing, "Write") && !strings.Contains(f.Doing, "write") {
			t.Errorf("doing %q; want the holder's current stack, blocked writing", f.Doing)
		}
		if len(f.Waiters) != 2 {
			t.Fatalf("waiters %+v; want the 2 puts", f.Waiters)
		}
		for _, w := range f.Waiters {
			if w.PID != pid || w.Goroutine == f.Holder.Goroutine || w.Where == nil || w.Where.Func != "main.(*Queue).put" {
				t.Errorf("waiter %+v; want another goroutine of pid %d waiting in main.(*Queue).put", w, pid)
			}
		}
	})
	t.Run("cycle", func(t *testing.T) {
		pid := startExample(t, "cycle")
		f := attachExample(t, pid).Findings[0]
		var locks []string
		for _, st := range f.Cycle {
			locks = append(locks, st.WaitsFor)
		}
		slices.Sort(locks)
		if f.Kind != report.Cycle || !slices.Equal(locks, []string{"accounts", "ledger"}) {
			t.Fatalf("finding %+v; want a cycle over accounts and ledger", f)
		}
		if g := f.Cycle[0].Goroutine; g == f.Cycle[1].Goroutine {
			t.Errorf("both steps of the cycle are goroutine %d", g)
		}
	})
	t.Run("chain", func(t *testing.T) {
		pid := startExample(t, "chain")
		r := attachExample(t, pid)
		f := r.Findings[0]
		if f.Kind != report.DeadHolder || f.Lock != "queue.wlock" || f.Holder == nil || f.Holder.Alive || f.Holder.PID == pid {
			t.Fatalf("finding %+v; want dead-holder of queue.wlock, a killed child of pid %d", f, pid)
		}
		if len(f.Waiters) != 1 || f.Waiters[0].PID != pid || f.Waiters[0].Where == nil || f.Waiters[0].Where.Func != "main.(*Queue).flushShared" {
			t.Fatalf("waiters of queue.wlock %+v; want pid %d's flushShared", f.Waiters, pid)
		}
		// flushShared holds queue.buf: the two puts behind it are in the
		// same finding, the chain from the dead process to them.
		var holder int64 = -1
		for _, l := range r.Locks {
			if l.Name == "queue.buf" && l.Kind == "mutex" && l.Holder != nil {
				holder = l.Holder.Goroutine
			}
		}
		if holder != f.Waiters[0].Goroutine {
			t.Errorf("queue.buf held by goroutine %d; want %d, the waiter of queue.wlock", holder, f.Waiters[0].Goroutine)
		}
		if len(f.Behind) != 2 {
			t.Fatalf("behind %+v; want the 2 puts", f.Behind)
		}
		for _, st := range f.Behind {
			if st.PID != pid || st.WaitsFor != "queue.buf" || st.Where == nil || st.Where.Func != "main.(*Queue).put" {
				t.Errorf("behind %+v; want pid %d waiting for queue.buf in main.(*Queue).put", st, pid)
			}
		}
	})
	for _, tt := range []struct{ way, lock, kind string }{
		{"self", "cache", "mutex"},
		{"rwtrap", "config", "rwmutex"},
	} {
		t.Run(tt.way, func(t *testing.T) {
			pid := startExample(t, tt.way)
			f := attachExample(t, pid).Findings[0]
			if f.Kind != report.SelfDeadlock || f.Lock != tt.lock || f.LockKind != tt.kind || f.Holder == nil || f.Holder.PID != pid {
				t.Fatalf("finding %+v; want self-deadlock on %s %s in pid %d", f, tt.kind, tt.lock, pid)
			}
		})
	}
}
