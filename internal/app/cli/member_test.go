package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/forge"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

const victimsEnv = "LOCKWATCH_CLI_TEST_VICTIMS"

// forgerRole is a hostile member of the run: it names two unrelated live
// processes (pid:start,pid:start in victimsEnv) in the process table, and
// forges the second as the holder of "forged.lock", as a dead holder whose
// pid was reused in the same clock tick would look. Then it waits for that
// lock: a deadlock lockwatch reports.
func forgerRole(dir string) int {
	if d := os.Getenv(probe.EnvDir); d != "" {
		dir = d
	}
	var victims []proc.Identity
	for _, v := range strings.Split(os.Getenv(victimsEnv), ",") {
		pid, start, _ := strings.Cut(v, ":")
		p, err1 := strconv.Atoi(pid)
		s, err2 := strconv.ParseUint(start, 10, 64)
		if err1 != nil || err2 != nil {
			fmt.Println("error: bad victims", os.Getenv(victimsEnv))
			return 1
		}
		victims = append(victims, proc.Identity{PID: p, Start: s})
	}
	r, err := lockreg.Open(dir, lockreg.Options{Role: "forger"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	m, err := r.Mutex("forged.lock") // lock index 0
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fa, err := forge.Open(dir)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var slot int
	for _, v := range victims {
		if slot, err = fa.AddProcess(v, forge.Running); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	if err := fa.SetHolder(0, victims[len(victims)-1], slot); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fa.Close()
	fmt.Println("forged")
	m.Lock(context.Background()) // the word names a live process: waits
	return 0
}

// victims starts two unrelated processes, outside any run, and returns
// them and the environment that names them to forgerRole.
func victims(t *testing.T) ([]proc.Identity, string) {
	t.Helper()
	var ids []string
	var out []proc.Identity
	for range 2 {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		st, err := proc.ReadStat(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st.Identity())
		ids = append(ids, fmt.Sprintf("%d:%d", st.PID, st.Start))
	}
	return out, victimsEnv + "=" + strings.Join(ids, ",")
}

// checkForged checks the report of a forger's run: the forged holder is
// reported dead (reused), the forged entries are not alive.
func checkForged(t *testing.T, r *report.Report, vs []proc.Identity) {
	t.Helper()
	for _, p := range r.Processes {
		for _, v := range vs {
			if p.PID == v.PID && (p.Alive || p.State != "reused") {
				t.Errorf("forged entry for unrelated pid %d reported %s (alive %v); want reused", p.PID, p.State, p.Alive)
			}
		}
	}
	if len(r.Findings) == 0 || r.Findings[0].Kind != report.DeadHolder || r.Findings[0].Lock != "forged.lock" {
		t.Fatalf("got findings %+v; want dead-holder on forged.lock", r.Findings)
	}
	if h := r.Findings[0].Holder; h == nil || h.PID != vs[1].PID || h.Alive || h.State != "reused" {
		t.Errorf("got holder %+v; want pid %d, reused", h, vs[1].PID)
	}
}

// A member that forges the process table (an unrelated live process named
// running, and a dead holder's record carrying an unrelated process's pid
// and start time, as a same-tick pid reuse would) gets neither called alive
// by attach (wait mode's report).
func TestAttachForgedEntries(t *testing.T) {
	vs, env := victims(t)
	dir := runDir(t)
	_, _, out := child(t, "forger", dir, env)
	expectLine(t, out, "forged")
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, stdout, stderr := lockwatch(t, "attach", "-o", "json", "--stuck-after=1s", dir)
		if code == ExitDeadlock {
			checkForged(t, readReport(t, []byte(stdout)), vs)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deadlock after %v: exit %d\n%s%s", probablyStillBlocked, code, stdout, stderr)
		}
		time.Sleep(quiescent)
	}
}

// --on-deadlock=kill kills the forger (a member) and its process group,
// and neither unrelated process the forged records name.
func TestRunKillForgedEntries(t *testing.T) {
	vs, env := victims(t)
	name, value, _ := strings.Cut(env, "=")
	t.Setenv(name, value)
	t.Setenv(roleEnv, "forger")
	out := t.TempDir() + "/report.json"
	code, stdout, stderr := lockwatch(t, "run", "--on-deadlock=kill", "--stuck-after=1s", "--interval=50ms",
		"-o", "json", "--report", out, "--", os.Args[0], "-test.run=^$")
	if strings.Contains(stderr, "not killed") {
		t.Errorf("got %q; want every process of the run killed", stderr)
	}
	if code != ExitRunDeadlock {
		t.Fatalf("got exit %d; want %d\n%s%s", code, ExitRunDeadlock, stdout, stderr)
	}
	for _, v := range vs {
		if st, _ := proc.Check(v); st != proc.Alive {
			t.Errorf("unrelated pid %d is %v after --on-deadlock=kill; want it untouched", v.PID, st)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := readReport(t, b)
	checkForged(t, r, vs)
	for _, p := range r.Processes {
		if p.Role == "forger" {
			if st, _ := proc.Check(proc.Identity{PID: p.PID, Start: p.Start}); !st.Dead() {
				t.Errorf("forger pid %d is %v; want killed", p.PID, st)
			}
		}
	}
}

// escapes is what a hostile run puts in its names: an OSC that retitles
// the terminal, ended by BEL, and a clear-screen CSI; a C1 CSI; a bidi
// override.
const escapes = "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e"

// escaperRole holds a lock whose name, and whose process's role and
// arguments, carry terminal escapes; it waits on a second one held by a
// child it lets die, so findings, notes and stacks carry them too.
func escaperRole(dir string) int {
	r, err := lockreg.Open(dir, lockreg.Options{Role: "role" + escapes})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	m, err := r.Mutex("n" + escapes)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if err := m.Lock(context.Background()); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// startEscaper starts the escaper in a fresh run under the tests' root
// (ps lists it) and returns the run and the escaper's pid once it holds
// its lock.
func startEscaper(t *testing.T) (string, int) {
	t.Helper()
	root, err := arena.DefaultRoot() // the tests' temporary root: ps lists it
	if err != nil {
		t.Fatal(err)
	}
	dir, err := arena.NewRunDir(root.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command(os.Args[0], "-test.run=^$", "arg"+escapes)
	cmd.Env = append(cleanEnv(), roleEnv+"=escaper", dirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Kept open: the escaper holds its lock until its stdin ends (with
	// /dev/null it returned at once, and attach saw a dead holder).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	expectLine(t, bufio.NewReader(stdout), "locked")
	return dir, cmd.Process.Pid
}

// No escape sequence from a run reaches the terminal: attach's tables,
// findings and stacks, watch, and ps print them escaped.
func TestEscapes(t *testing.T) {
	dir, _ := startEscaper(t)
	raw := func(name, s string) {
		t.Helper()
		for _, bad := range []string{"\x1b", "\x07", "\u009b", "\u202e"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s output holds a raw %q:\n%s", name, bad, s)
			}
		}
	}
	code, out, errs := lockwatch(t, "attach", "--stuck-after=1h", dir)
	if code != ExitOK || !strings.Contains(out, `n\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e`) {
		t.Errorf("attach: exit %d; want 0 and the lock's name escaped\n%s%s", code, out, errs)
	}
	raw("attach", out+errs)
	code, out, errs = lockwatch(t, "ps", "--all")
	if code != ExitOK || !strings.Contains(out, `role\x1b]0;pwned`) {
		t.Errorf("ps: exit %d; want 0 and the role escaped\n%s%s", code, out, errs)
	}
	raw("ps", out+errs)
	code, out, errs = lockwatch(t, "attach", dir+escapes)
	raw("an error naming a run", out+errs)
	if code != ExitUsage {
		t.Errorf("attach of a missing run: exit %d; want %d", code, ExitUsage)
	}
}
