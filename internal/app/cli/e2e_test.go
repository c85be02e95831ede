package cli

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/forge"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// readReport decodes a JSON report.
func readReport(t testing.TB, b []byte) *report.Report {
	t.Helper()
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	return &r
}

// exitCodeOf returns a finished command's exit status.
func exitCodeOf(t testing.TB, err error) int {
	t.Helper()
	var xe *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &xe):
		return xe.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// checkDeadHolder checks the demo's finding: a dead worker holds
// queue.wlock.
func checkDeadHolder(t testing.TB, r *report.Report) {
	t.Helper()
	if len(r.Findings) == 0 || r.Findings[0].Kind != report.DeadHolder || r.Findings[0].Lock != "queue.wlock" {
		t.Fatalf("got findings %+v; want dead-holder on queue.wlock first", r.Findings)
	}
	f := r.Findings[0]
	if f.Holder == nil || f.Holder.Alive || f.Holder.Role != "worker" {
		t.Errorf("got holder %+v; want a dead worker", f.Holder)
	}
	if st, _ := proc.Check(proc.Identity{PID: f.Holder.PID, Start: f.Holder.Start}); !st.Dead() {
		t.Errorf("holder pid %d is %v; want dead", f.Holder.PID, st)
	}
}

// mainWaits reports whether the demo's main process is among the waiters
// of the report's first finding. The worker's death is confirmed as soon as
// the kernel marks the lock, which on a loaded machine can be before main
// reaches the lock: a report that must show main waiting is polled for.
func mainWaits(r *report.Report) bool {
	if len(r.Findings) == 0 {
		return false
	}
	roles := make(map[int]string)
	for _, p := range r.Processes {
		roles[p.PID] = p.Role
	}
	for _, w := range r.Findings[0].Waiters {
		if roles[w.PID] == "main" {
			return true
		}
	}
	return false
}

func TestRunDemoHang(t *testing.T) {
	lw, demo := bins(t)
	out := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(lw, "run", "--on-deadlock=kill", "-o", "json", "--report", out, "--", demo, "--hang", "--items=2000")
	cmd.Env = cleanEnv()
	b, err := cmd.CombinedOutput()
	if code := exitCodeOf(t, err); code != ExitRunDeadlock {
		t.Fatalf("got exit %d; want %d\n%s", code, ExitRunDeadlock, b)
	}
	rb, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := readReport(t, rb)
	t.Cleanup(func() { os.RemoveAll(r.Run) }) // kept by run: it has findings
	checkDeadHolder(t, r)
	checkTokens(t, r) // token_test.go
	// --on-deadlock=kill ended every process of the run.
	for _, p := range r.Processes {
		if st, _ := proc.Check(proc.Identity{PID: p.PID, Start: p.Start}); st == proc.Alive {
			t.Errorf("pid %d (%s) still alive after --on-deadlock=kill", p.PID, p.Role)
		}
	}
}

func TestAttachPlainDemo(t *testing.T) {
	_, demo := bins(t)
	cmd := exec.Command(demo, "--hang", "--items=2000")
	cmd.Env = cleanEnv() // the probe makes its own run directory
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The demo's children are in its process group only under run:
		// kill what the report names, then the demo.
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, stdout, stderr := lockwatch(t, "attach", "-o", "json", pid)
		// The main process begins to wait for the lock some time after
		// the holder died: a report made before shows no waiter yet.
		if code == ExitDeadlock && (time.Now().After(deadline) || mainWaits(readReport(t, []byte(stdout)))) {
			r := readReport(t, []byte(stdout))
			t.Cleanup(func() { os.RemoveAll(r.Run) }) // the run the demo's probe made
			checkDeadHolder(t, r)
			if mainWaits(r) {
				for _, p := range r.Processes {
					if p.Alive && p.PID != cmd.Process.Pid {
						syscallKill(p.PID)
					}
				}
				return
			}
			// Found before main reached the lock: poll again.
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deadlock with main waiting after %v: exit %d\n%s%s", probablyStillBlocked, code, stdout, stderr)
		}
		time.Sleep(quiescent)
	}
}

// Not one false finding in 20 runs of the fixed demo (the whole demo,
// with fewer items, to stay fast; testdata/fix-runs.sh runs the full one).
func TestRunDemoFix(t *testing.T) {
	lw, demo := bins(t)
	for i := range 20 {
		out := filepath.Join(t.TempDir(), "report.json")
		cmd := exec.Command(lw, "run", "--on-deadlock=kill", "-o", "json", "--interval=20ms", "--report", out, "--", demo, "--fix", "--items=2000")
		cmd.Env = cleanEnv()
		b, err := cmd.CombinedOutput()
		if code := exitCodeOf(t, err); code != 0 {
			t.Fatalf("run %d: got exit %d; want 0\n%s", i, code, b)
		}
		rb, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if r := readReport(t, rb); len(r.Findings) != 0 {
			t.Fatalf("run %d: got findings %+v; want none", i, r.Findings)
		}
	}
}

// Two processes take lock.a and lock.b in opposite orders.
func TestAttachCycle(t *testing.T) {
	dir := runDir(t)
	ab, abIn, abOut := child(t, "ab", dir, probe.EnvDir+"="+dir)
	expectLine(t, abOut, "locked")
	ba, baIn, baOut := child(t, "ba", dir)
	expectLine(t, baOut, "locked")
	// ba runs no probe; something at its socket accepts and never answers.
	st, err := proc.ReadStat(ba.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", probeclient.SocketPath(dir, st.Identity()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	abIn.Write([]byte("go\n"))
	baIn.Write([]byte("go\n"))
	pids := []int{ab.Process.Pid, ba.Process.Pid}
	slices.Sort(pids)

	deadline := time.Now().Add(probablyStillBlocked)
	for {
		began := time.Now()
		code, stdout, stderr := lockwatch(t, "attach", "-o", "json", "--probe-timeout=200ms", dir)
		if code == ExitDeadlock {
			if took := time.Since(began); took > probablyStillBlocked/2 {
				t.Errorf("attach took %v with a probe that does not answer", took)
			}
			r := readReport(t, []byte(stdout))
			f := r.Findings[0]
			if f.Kind != report.Cycle || len(f.Cycle) != 2 {
				t.Fatalf("got %+v; want a cycle of 2", r.Findings)
			}
			var got []int
			for _, st := range f.Cycle {
				got = append(got, st.PID)
			}
			slices.Sort(got)
			if !slices.Equal(got, pids) || f.Cycle[0].WaitsFor != "lock.a" || f.Cycle[1].WaitsFor != "lock.b" {
				t.Errorf("got cycle %+v; want pids %v waiting for lock.a then lock.b", f.Cycle, pids)
			}
			if !slices.ContainsFunc(r.Notes, func(n string) bool {
				return strings.Contains(n, "pid "+strconv.Itoa(ba.Process.Pid)) && strings.Contains(n, "did not answer")
			}) {
				t.Errorf("got notes %q; want one saying pid %d's probe did not answer", r.Notes, ba.Process.Pid)
			}
			// Also by pid, and as a table.
			code, stdout, _ := lockwatch(t, "attach", strconv.Itoa(ab.Process.Pid))
			if code != ExitDeadlock || !strings.Contains(stdout, "CYCLE") {
				t.Errorf("attach by pid: exit %d\n%s", code, stdout)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cycle after %v: exit %d\n%s%s", probablyStillBlocked, code, stdout, stderr)
		}
		time.Sleep(quiescent)
	}
}

// One line on stderr, exit 2, for each kind of bad input.
func TestBadInput(t *testing.T) {
	good := runDir(t)
	r, err := lockreg.Open(good, lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	goodArena, err := os.ReadFile(filepath.Join(good, arena.ArenaFile))
	if err != nil {
		t.Fatal(err)
	}
	withArena := func(patch func([]byte) []byte) string {
		dir := runDir(t)
		if err := os.WriteFile(filepath.Join(dir, arena.ArenaFile), patch(slices.Clone(goodArena)), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	corrupt := withArena(func(b []byte) []byte { return b[:100] })
	version := withArena(func(b []byte) []byte { b[8] = 99; return b })
	version4 := withArena(func([]byte) []byte { return forge.ArenaV4() })
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	open := runDir(t) // a real run, then opened to other users
	if reg, err := lockreg.Open(open, lockreg.Options{}); err != nil {
		t.Fatal(err)
	} else {
		reg.Close()
	}
	os.Chmod(open, 0o755)

	sleep := exec.Command("sleep", "60")
	sleep.Env = cleanEnv()
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()

	tests := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"unknown pid", []string{"attach", "4194305"}, "no process has pid"},
		{"not a pid", []string{"attach", "-7"}, "unknown shorthand flag"},
		{"no probe", []string{"attach", strconv.Itoa(sleep.Process.Pid)}, "is not running a probe"},
		{"missing run", []string{"attach", filepath.Join(good, "nope")}, "does not exist"},
		{"not a run", []string{"attach", runDir(t)}, "not a lockwatch run"},
		{"corrupted", []string{"attach", corrupt}, "corrupted arena"},
		{"version", []string{"attach", version}, "another format version"},
		{"older version", []string{"attach", version4}, "format version 4, written by an older lockreg"},
		{"symlink", []string{"attach", link}, "symbolic link"},
		{"open to others", []string{"watch", open}, "open to other users"},
		{"stacks of no probe", []string{"stacks", strconv.Itoa(sleep.Process.Pid)}, "is not running a probe"},
		{"stacks of garbage", []string{"stacks", filepath.Join(corrupt, arena.ArenaFile)}, "not a Go traceback or goroutine profile"},
		{"bad output", []string{"-o", "yaml", "ps"}, "want table, json or dot"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	}
	if os.Getuid() == 0 {
		other := exec.Command("sleep", "60")
		other.SysProcAttr = nobody()
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { other.Process.Kill(); other.Wait() }()
		tests = append(tests, struct {
			name string
			args []string
			want string
		}{"another user's pid", []string{"attach", strconv.Itoa(other.Process.Pid)}, "belongs to uid 65534"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := lockwatch(t, tt.args...)
			if code != ExitUsage {
				t.Errorf("got exit %d; want %d\nstdout: %s\nstderr: %s", code, ExitUsage, stdout, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "lockwatch: ") {
				t.Errorf("got stderr %q; want one line starting \"lockwatch: \"", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("got stderr %q; want it to say %q", stderr, tt.want)
			}
		})
	}
}
