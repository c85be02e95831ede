package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/report"
)

// startPlainGo builds and starts goproc's test target, a program with the
// standard sync only and no probe (built as kind: "default" or "stripped"),
// and returns its pid once it says it is ready.
func startPlainGo(t testing.TB, kind string, targetArgs ...string) int {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	exe := filepath.Join(t.TempDir(), "plain")
	args := []string{"build", "-o", exe}
	if kind == "stripped" {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, "../../diag/goproc/testdata/target")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	target := exec.Command(exe, targetArgs...)
	stdout, err := target.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	br := bufio.NewReader(stdout)
	expectLine(t, br, "ready")
	go io.Copy(io.Discard, br)
	return target.Process.Pid
}

// attachSettled runs 'lockwatch attach -o json PID' until the target's
// eight lock waiters are all blocked.
func attachSettled(t *testing.T, pid int) (*report.Report, int) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, out, errOut := lockwatch(t, "attach", "-o", "json", strconv.Itoa(pid))
		var r report.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("attach: exit %d, %v: %s%s", code, err, out, errOut)
		}
		if len(r.Waiters) == 8 {
			return &r, code
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d waiters; want 8:\n%s", probablyStillBlocked, len(r.Waiters), out)
		}
		time.Sleep(quiescent)
	}
}

// TestAttachPlainGo: a program with no probe, built with the standard sync
// only (default and stripped builds), is diagnosed from its memory: the
// waiters by mutex, the holders inferred and labelled so, the AB/BA loop
// as an inferred cycle, in JSON and in the table; its stacks too.
func TestAttachPlainGo(t *testing.T) {
	for _, kind := range []string{"default", "stripped"} {
		t.Run(kind, func(t *testing.T) {
			pid := startPlainGo(t, kind)
			r, code := attachSettled(t, pid)
			if code != ExitDeadlock {
				t.Errorf("exit %d; want %d (a cycle, inferred)", code, ExitDeadlock)
			}
			if len(r.Findings) != 1 || r.Findings[0].Kind != report.InferredCycle || len(r.Findings[0].Cycle) != 2 {
				t.Fatalf("findings %+v; want one inferred cycle of two goroutines", r.Findings)
			}
			if r.Deadlock() {
				t.Errorf("an inferred cycle counts as a proven deadlock")
			}
			byLock := map[string][]string{}
			for _, w := range r.Waiters {
				byLock[w.Lock] = append(byLock[w.Lock], strconv.FormatBool(w.Read))
			}
			counts := map[int]int{}
			for _, ws := range byLock {
				counts[len(ws)]++
			}
			// muHeld: 3 waiters; the pair: 1 each; rw: a writer, 2 readers.
			if counts[3] != 2 || counts[1] != 2 {
				t.Errorf("waiters by lock %v; want two locks with 3 waiters and two with 1", byLock)
			}
			inferred := 0
			for _, l := range r.Locks {
				if l.Holder == nil || l.Holder.Inferred == "" || l.Holder.Goroutine == 0 {
					t.Errorf("lock %s: holder %+v; want one inferred, with its evidence", l.Name, l.Holder)
					continue
				}
				inferred++
			}
			if inferred != 4 {
				t.Errorf("%d inferred holders; want 4", inferred)
			}
			if kind == "default" {
				if _, ok := byLock["main.muHeld"]; !ok {
					t.Errorf("locks %v: want the global main.muHeld by name", byLock)
				}
			}

			code, out, _ := lockwatch(t, "attach", strconv.Itoa(pid))
			if code != ExitDeadlock || !strings.Contains(out, "INFERRED-CYCLE") || strings.Count(out, "(inferred)") != 4 || !strings.Contains(out, "main.lockAB") {
				t.Errorf("attach: exit %d:\n%s", code, out)
			}
			if kind == "default" {
				code, out, _ := lockwatch(t, "ps", "-o", "json")
				var ps psOutput
				if err := json.Unmarshal([]byte(out), &ps); err != nil {
					t.Fatalf("ps: exit %d, %v", code, err)
				}
				found := false
				for _, g := range ps.Go {
					if g.PID == pid {
						found = true
						if g.LockWaiters != 8 || g.Goroutines < 11 {
							t.Errorf("ps lists %+v; want 8 lock waiters among 11 goroutines at least", g)
						}
					}
				}
				if !found {
					t.Errorf("ps does not list pid %d among the Go processes without a probe: %+v", pid, ps.Go)
				}
			}
			if kind == "default" {
				// watch PID: the same report, kept up to date; exit 3 at
				// Ctrl-C for its inferred cycle.
				w := startWatchJSON(t, strconv.Itoa(pid))
				if r := w.next(); !r.Has(report.InferredCycle) {
					t.Errorf("watch: findings %+v; want the inferred cycle", r.Findings)
				}
				w.cancel()
				go io.Copy(io.Discard, w.pr)
				select {
				case code := <-w.done:
					if code != ExitDeadlock {
						t.Errorf("watch: exit %d at Ctrl-C; want %d", code, ExitDeadlock)
					}
				case <-time.After(probablyStillBlocked):
					t.Fatal("watch did not end when its context did")
				}
			}
			code, out, errOut := lockwatch(t, "stacks", "-o", "json", strconv.Itoa(pid))
			var st stacksOutput
			if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || len(st.Dumps) != 1 || st.Format != "memory" {
				t.Fatalf("stacks: exit %d, %v:\n%s%s", code, err, out, errOut)
			}
			waitHeld := false
			for _, g := range st.Dumps[0].Groups {
				if len(g.Frames) > 0 && g.Count == 3 && len(g.States) == 1 && g.States[0].State == "sync.Mutex.Lock" {
					waitHeld = slices.ContainsFunc(g.Frames, func(f stacksFrame) bool { return f.Func == "main.waitHeld" })
				}
			}
			if !waitHeld || !strings.Contains(out, "main.holdAndBlock") {
				t.Errorf("stacks: want the 3 waiters of muHeld in one group, and the holder's stack:\n%s", out)
			}
		})
	}
}

// TestAttachCore: the same report from a core file of the program (gcore),
// with its binary found from the core or given with --exe; another binary
// is refused in one line.
func TestAttachCore(t *testing.T) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Skip("gcore (gdb) is not installed")
	}
	pid := startPlainGo(t, "default")
	attachSettled(t, pid)
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	core := prefix + "." + strconv.Itoa(pid)
	code, out, errOut := lockwatch(t, "attach", "-o", "json", core)
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("attach %s: exit %d, %v: %s%s", core, code, err, out, errOut)
	}
	if code != ExitDeadlock || len(r.Findings) != 1 || r.Findings[0].Kind != report.InferredCycle || len(r.Waiters) != 8 {
		t.Errorf("exit %d, findings %+v, %d waiters; want an inferred cycle and 8 waiters", code, r.Findings, len(r.Waiters))
	}
	code, out, errOut = lockwatch(t, "stacks", core)
	if code != 0 || !strings.Contains(out, "main.holdAndBlock") {
		t.Errorf("stacks %s: exit %d:\n%s%s", core, code, out, errOut)
	}
	code, _, errOut = lockwatch(t, "attach", "--exe", "/bin/true", core)
	if code != ExitUsage || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "not a Go program") {
		t.Errorf("attach --exe /bin/true: exit %d: %q; want one line saying it is not Go", code, errOut)
	}
}

// TestAttachPlainGoStuck: once the runtime has noted how long its
// goroutines wait (a GC ran since they blocked), a holder inferred while it
// is blocked on a channel is a stuck holder, said to be inferred, its time
// a lower bound.
func TestAttachPlainGoStuck(t *testing.T) {
	pid := startPlainGo(t, "default", "-gc", "20ms")
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, out, errOut := lockwatch(t, "attach", "--stuck-after", "200ms", "-o", "json", strconv.Itoa(pid))
		var r report.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("attach: exit %d, %v: %s%s", code, err, out, errOut)
		}
		stuck := 0
		for _, f := range r.Findings {
			if f.Kind == report.StuckHolder {
				stuck++
				if !strings.Contains(f.Summary, "for at least") || !strings.Contains(f.Summary, "inferred, not proven") ||
					f.Holder == nil || !strings.Contains(f.Holder.Inferred, "it waits (chan receive on 0x") {
					t.Fatalf("stuck holder %+v: want it said to be inferred, with a lower bound", f)
				}
			}
		}
		if stuck == 2 { // muHeld's holder and rw's reader
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, findings %+v; want two inferred stuck holders", probablyStillBlocked, r.Findings)
		}
		time.Sleep(quiescent)
	}
}
