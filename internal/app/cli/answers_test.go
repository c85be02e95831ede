package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// TestPSDropInDeadlock: ps gives a run the state and findings attach gives
// it, drop-in mutexes included, and exits 3 as attach does. (ps read the
// registry alone: a cycle of drop-in mutexes was "running", findings "-",
// exit 0.)
func TestPSDropInDeadlock(t *testing.T) {
	pid := startExample(t, "cycle")
	code, stdout, stderr := lockwatch(t, "ps", "-o", "json")
	var out psOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("ps -o json: %v\n%s%s", err, stdout, stderr)
	}
	var run *psRun
	for i, r := range out.Runs {
		for _, p := range r.Processes {
			if p.PID == pid {
				run = &out.Runs[i]
			}
		}
	}
	if run == nil {
		t.Fatalf("ps lists no run of pid %d:\n%s", pid, stdout)
	}
	t.Cleanup(func() { os.RemoveAll(run.Dir) })
	if run.State != "deadlock" || len(run.Findings) == 0 || run.Findings[0].Kind != "cycle" {
		t.Errorf("run %s: state %q, findings %+v; want deadlock, 1 cycle (as attach reports)", run.Name, run.State, run.Findings)
	}
	if code != ExitDeadlock {
		t.Errorf("ps -o json: exit %d; want %d with a run in deadlock", code, ExitDeadlock)
	}
	if code, stdout, _ := lockwatch(t, "ps"); code != ExitDeadlock || !strings.Contains(stdout, "1 cycle") {
		t.Errorf("ps: exit %d\n%s\nwant exit %d and the run's \"1 cycle\"", code, stdout, ExitDeadlock)
	}
}

// TestStacksExitStatus: stacks exits 3 on the Go runtime's own deadlock
// dump, as README and --help say, and 0 on another panic.
func TestStacksExitStatus(t *testing.T) {
	const asleep = "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [sync.Mutex.Lock]:\n" +
		"internal/sync.runtime_SemacquireMutex(0xc000012345?, 0x0?, 0x1?)\n\t/usr/local/go/src/runtime/sema.go:95 +0x25\n" +
		"main.main()\n\t/app/main.go:9 +0x45\nexit status 2\n"
	for _, tt := range []struct {
		name, dump string
		want       int
	}{
		{"runtime deadlock", asleep, ExitDeadlock},
		{"panic", panicDump, ExitOK},
	} {
		for _, o := range []string{"table", "json"} {
			code, _, stderr := lockwatchIn(t, strings.NewReader(tt.dump), "stacks", "-o", o)
			if code != tt.want {
				t.Errorf("%s, -o %s: got exit %d; want %d\n%s", tt.name, o, code, tt.want, stderr)
			}
		}
	}
}

// TestStacksNotUTF8: a traceback whose panic message holds bytes that are
// not UTF-8 within its first 4 KiB is still a traceback (it was refused as
// "not a Go traceback", taken for a profile); so is one with a stray NUL.
func TestStacksNotUTF8(t *testing.T) {
	for _, msg := range []string{"bad \xff\xfe bytes", "a NUL \x00 here", strings.Repeat("\xc3", 300)} {
		dump := "panic: " + msg + "\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\nexit status 2\n"
		code, stdout, stderr := lockwatchIn(t, strings.NewReader(dump), "stacks")
		if code != ExitOK || !strings.Contains(stdout, "1 goroutine in 1 group (text)") {
			t.Errorf("panic %q: got exit %d\n%s%s\nwant the traceback read", msg, code, stdout, stderr)
		}
	}
}

// TestStacksGroupHeader: a group all of whose goroutines are in one state
// names it once, without repeating the count ("5 goroutines:
// sync.Mutex.Lock 5" before); mixed states are counted.
func TestStacksGroupHeader(t *testing.T) {
	var b strings.Builder
	for i := range 3 {
		b.WriteString("goroutine " + strconv.Itoa(10+i) + " [sync.Mutex.Lock]:\nmain.worker()\n\t/app/w.go:9 +0x1\n\n")
	}
	b.WriteString("goroutine 20 [chan receive]:\nmain.other()\n\t/app/o.go:3 +0x1\n\n")
	b.WriteString("goroutine 21 [select]:\nmain.other()\n\t/app/o.go:3 +0x1\n\n")
	_, stdout, _ := lockwatchIn(t, strings.NewReader(b.String()), "stacks")
	for _, want := range []string{"3 goroutines [sync.Mutex.Lock]\n", "2 goroutines: chan receive 1, select 1\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("got\n%s\nwant a line %q", stdout, want)
		}
	}
}

// TestCLIAnswers: 'lockwatch version' is a command; 'help' of no command
// is an error; the report flags are not in the help of commands that do
// not read reports; every command's help has an example.
func TestCLIAnswers(t *testing.T) {
	code, stdout, _ := lockwatch(t, "version")
	_, flag, _ := lockwatch(t, "--version")
	if code != ExitOK || stdout != flag {
		t.Errorf("version: exit %d, %q; want exit 0 and what --version prints, %q", code, stdout, flag)
	}
	code, stdout, _ = lockwatch(t, "version", "-o", "json")
	var v versionInfo
	if err := json.Unmarshal([]byte(stdout), &v); code != ExitOK || err != nil || v.Schema != VersionSchema || v.Go == "" {
		t.Errorf("version -o json: exit %d, %s (%v); want schema %q", code, stdout, err, VersionSchema)
	}
	code, _, stderr := lockwatch(t, "help", "nosuch")
	if code != ExitUsage || !strings.HasPrefix(stderr, "lockwatch: help: no command \"nosuch\"") {
		t.Errorf("help nosuch: exit %d, %q; want exit 2 and one line", code, stderr)
	}
	if code, stdout, _ := lockwatch(t, "help", "ps"); code != ExitOK || !strings.Contains(stdout, "lockwatch ps [flags]") {
		t.Errorf("help ps: exit %d\n%s", code, stdout)
	}
	code, _, stderr = lockwatch(t, "frobnicate")
	if code != ExitUsage || stderr != "lockwatch: unknown command \"frobnicate\"; see 'lockwatch --help' for the commands\n" {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
	for _, c := range []string{"ps", "prune", "stacks", "completion", "holders", "version"} {
		_, stdout, _ := lockwatch(t, c, "--help")
		for _, f := range []string{"--events", "--probe-timeout", "--probe-concurrency", "--live-stacks", "--text-dumps"} {
			if strings.Contains(stdout, f) {
				t.Errorf("%s --help lists %s, which %s does not use", c, f, c)
			}
		}
	}
	for _, c := range []string{"attach", "watch", "run"} {
		_, stdout, _ := lockwatch(t, c, "--help")
		if !strings.Contains(stdout, "--stuck-after") || !strings.Contains(stdout, "--probe-timeout") {
			t.Errorf("%s --help lacks the report flags:\n%s", c, stdout)
		}
	}
	if code, _, stderr := lockwatch(t, "ps", "-o", "dot"); code != ExitUsage || !strings.Contains(stderr, "-o dot: only attach, watch and run") {
		t.Errorf("ps -o dot: exit %d, %q; want a usage error", code, stderr)
	}
	if code, _, stderr := lockwatch(t, "run", "-o", "dot", "--", "true"); code != ExitRunFailed || !strings.Contains(stderr, "--report FILE") {
		t.Errorf("run -o dot without --report: exit %d, %q; want exit 125 asking for --report", code, stderr)
	}
}

// TestPruneJSONAndSize: prune -o json (with --dry-run too) is JSON with a
// schema, and the memory a run takes is its allocated blocks, not the
// arena's apparent size (25.5 MiB said for five runs of some 270 KiB).
func TestPruneJSONAndSize(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o700)
	t.Setenv(arena.EnvRoot, root)
	dir, err := arena.NewRunDir(root)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := lockreg.Open(dir, lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := reg.Mutex("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
	reg.Close()
	fi, err := os.Stat(filepath.Join(dir, arena.ArenaFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"prune", "--dry-run", "-o", "json"}, {"prune", "-o", "json"}} {
		code, stdout, stderr := lockwatch(t, args...)
		var out pruneOutput
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != ExitOK || out.Schema != PruneSchema {
			t.Fatalf("%q: exit %d, %s%s (%v); want JSON with schema %q", args, code, stdout, stderr, err, PruneSchema)
		}
		if len(out.Remove) != 1 || out.Remove[0].Dir != dir || out.Remove[0].Why != "ended cleanly" {
			t.Fatalf("%q: removed %+v; want the clean run %s", args, out.Remove, dir)
		}
		if out.Bytes <= 0 || out.Bytes >= fi.Size()/2 {
			t.Errorf("%q: %d bytes; want the run's allocated blocks, far below the arena's apparent %d", args, out.Bytes, fi.Size())
		}
		if out.DryRun != (args[1] == "--dry-run") {
			t.Errorf("%q: dry_run %v", args, out.DryRun)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("prune left %s (%v)", dir, err)
	}
}

// TestDotGraph: attach -o dot draws the wait-for graph of a drop-in cycle:
// valid DOT, its two goroutines in their process's cluster, the two locks,
// the cycle's four edges red; rendered by Graphviz when it is installed.
func TestDotGraph(t *testing.T) {
	pid := startExample(t, "cycle")
	code, stdout, stderr := lockwatch(t, "attach", "-o", "dot", strconv.Itoa(pid))
	t.Cleanup(func() { removeRunOf(t, pid) })
	if code != ExitDeadlock {
		t.Fatalf("attach -o dot: exit %d; want %d\n%s", code, ExitDeadlock, stderr)
	}
	if !strings.HasPrefix(stdout, "digraph lockwatch {\n") || !strings.HasSuffix(stdout, "}\n") {
		t.Fatalf("not a DOT digraph:\n%s", stdout)
	}
	for _, want := range []string{"subgraph cluster_p0 {", `label="pid ` + strconv.Itoa(pid) + ` [stuck-cycle]\nalive"`,
		`"l:mutex/accounts" [label="accounts\n(mutex)"`, `"l:mutex/ledger" [label="ledger\n(mutex)"`, "CYCLE: 2 goroutines wait for each other"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("graph lacks %s:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "color=red, fontcolor=red"); n != 4 {
		t.Errorf("%d red edges; want the cycle's 4 (2 waits, 2 holds):\n%s", n, stdout)
	}
	renderDot(t, stdout)
}

// renderDot renders a graph with Graphviz's dot, when it is installed
// (.ci/run installs it), and checks that dot took it whole.
func renderDot(t *testing.T, graph string) {
	t.Helper()
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Log("graphviz not installed: the graph is not rendered")
		return
	}
	cmd := exec.Command(dot, "-Tsvg")
	cmd.Stdin = strings.NewReader(graph)
	var errs strings.Builder
	cmd.Stderr = &errs
	out, err := cmd.Output()
	if err != nil || errs.Len() > 0 || !strings.Contains(string(out), "<svg") {
		t.Errorf("dot -Tsvg: %v, stderr %q; the graph:\n%s", err, errs.String(), graph)
	}
}

// removeRunOf removes the run the example with pid made for itself.
func removeRunOf(t *testing.T, pid int) {
	for _, d := range runDirs() {
		if strings.Contains(filepath.Base(d), "-"+strconv.Itoa(pid)+"-") {
			os.RemoveAll(d)
		}
	}
}

// TestWatchEndedRun: watch of a run whose processes have all ended (and
// which no live process names) prints its report and stops, where it
// watched for ever; the process that closed its registry is "exited".
func TestWatchEndedRun(t *testing.T) {
	dir := runDir(t)
	cmd, in, out := child(t, "joiner", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "joined")
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), probablyStillBlocked)
	defer cancel()
	var o, e lockedBuffer
	code := Main(ctx, []string{"watch", "-o", "json", "--interval=10ms", dir}, nil, &o, &e)
	if code != ExitOK || !strings.Contains(e.String(), "the run has ended") {
		t.Fatalf("watch: exit %d, stderr %q; want it to stop by itself, exit 0", code, e.String())
	}
	r := readReport(t, []byte(strings.SplitN(o.String(), "\n", 2)[0]))
	if len(r.Processes) != 1 || r.Processes[0].State != report.Exited || r.Processes[0].Exit != "closed" {
		t.Errorf("processes %+v; want the one that closed its registry, exited", r.Processes)
	}
}

// TestWatchScreenLockOrder: watch's 80x24 screen with a lock-order
// finding shows each edge's call sites and then the tables, not the edges'
// stacks (they filled the screen: "... 85 more lines", no table).
func TestWatchScreenLockOrder(t *testing.T) {
	t.Setenv("COLUMNS", "80")
	t0 := time.Date(2026, 11, 25, 19, 58, 5, 0, time.UTC)
	var stack []report.FrameJSON
	for i := range 12 {
		stack = append(stack, report.FrameJSON{Func: fmt.Sprintf("example.com/app/pkg.frame%d", i), File: "example.com/app/pkg/f.go", Line: i + 1})
	}
	step := func(pid int, from, to string) report.OrderStep {
		return report.OrderStep{Party: report.Party{PID: pid, Goroutine: 7, Where: &stack[0]}, From: from, To: to, LockKind: "lockreg",
			HeldAt: &stack[1], HeldStack: stack, Stack: stack}
	}
	r := &report.Report{Schema: report.Schema, Run: "run-x", Taken: t0,
		Findings: []report.Finding{{Kind: report.LockOrder, Lock: "lock.a", LockKind: "lockreg", Order: []report.OrderStep{step(41, "lock.a", "lock.b"), step(42, "lock.b", "lock.a")},
			Summary: "lock order lock.a -> lock.b -> lock.a can deadlock", Next: "take lock.a before lock.b everywhere"}},
		Locks:     []report.LockRow{{Name: "lock.a", Kind: "lockreg", State: "free"}},
		Processes: []report.ProcRow{{PID: 41, State: "alive", Alive: true, Started: t0}, {PID: 42, State: "alive", Alive: true, Started: t0}},
	}
	a := &app{output: "table"}
	var b bytes.Buffer
	if err := a.printFit(&b, r, 24); err != nil {
		t.Fatal(err)
	}
	screen := b.String()
	for _, want := range []string{"LOCK-ORDER", "took lock.a at pkg.frame1 f.go:2", "PROCESSES"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "pkg.frame5") {
		t.Errorf("the screen shows the edges' stacks:\n%s", screen)
	}
	// attach still prints them.
	b.Reset()
	if err := a.printFit(&b, r, 0); err != nil || !strings.Contains(b.String(), "pkg.frame5") {
		t.Errorf("attach lacks the edges' stacks (%v):\n%s", err, b.String())
	}
}

// TestStatusLineLockOrder: run's status line shows a lock-order warning
// (it showed nothing until the end of the run).
func TestStatusLineLockOrder(t *testing.T) {
	var b strings.Builder
	s := &statusLine{w: &b, on: true, rows: 24, cols: 200, started: time.Now()}
	r := &report.Report{Processes: []report.ProcRow{{PID: 1, Alive: true}},
		Findings: []report.Finding{{Kind: report.LockOrder, Lock: "a", Order: []report.OrderStep{{From: "a", To: "b"}, {From: "b", To: "a"}}}}}
	s.draw(r, nil)
	if !strings.Contains(b.String(), `; LOCK ORDER: "a" and "b" taken in both orders (report at the end)`) {
		t.Errorf("got %q; want the lock-order warning", b.String())
	}
}

// TestRunMessagesFolded: run's own messages are folded at the terminal's
// width, at blanks (they broke mid-word).
func TestRunMessagesFolded(t *testing.T) {
	t.Setenv("COLUMNS", "60")
	var b strings.Builder
	a := &app{stderr: &b}
	msg := "lockwatch: no process has joined the run after 800ms: sleep (pid 4242) does not run lockwatch's probe, so none of its locks can be seen"
	fmt.Fprintf(a.msgs(), "%s\n", msg)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) < 2 || strings.Join(strings.Fields(b.String()), " ") != msg {
		t.Fatalf("got %q; want %q folded", b.String(), msg)
	}
	for _, l := range lines {
		if len(l) > 60 {
			t.Errorf("line %q is over 60 columns", l)
		}
	}
}

// TestEnvRootNotPrivate: a $LOCKWATCH_ROOT open to other users is one
// clear error for ps, prune and run alike (ps and prune listed nothing
// without a word; run called it a run directory).
func TestEnvRootNotPrivate(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o777)
	t.Setenv(arena.EnvRoot, root)
	for _, args := range [][]string{{"ps", "--all"}, {"prune"}, {"run", "--", "true"}} {
		code, _, stderr := lockwatch(t, args...)
		want := ExitUsage
		if args[0] == "run" {
			want = ExitRunFailed
		}
		if code != want || stderr != "lockwatch: LOCKWATCH_ROOT="+root+" is open to other users (mode 0777), so lockwatch keeps no runs in it: chmod 0700 it, or unset LOCKWATCH_ROOT\n" {
			t.Errorf("%q: exit %d, %q; want exit %d and the one line", args, code, stderr, want)
		}
	}
}

// TestRunDotReport: run -o dot --report FILE writes the run's wait-for
// graph to FILE: here a run that took lock.a and lock.b in both orders,
// whose lock-order loop is two dotted orange edges.
func TestRunDotReport(t *testing.T) {
	lw, _ := bins(t)
	file := filepath.Join(t.TempDir(), "graph.dot")
	cmd := exec.Command(lw, "run", "-o", "dot", "--report", file, "--", os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), roleEnv+"=order", orderEnv+"=lock.a,lock.b;lock.b,lock.a")
	out, err := cmd.CombinedOutput()
	if code := exitCodeOf(t, err); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	graph := string(b)
	for _, want := range []string{"digraph lockwatch {", `"l:lockreg/lock.a" -> "l:lockreg/lock.b" [label="then (pid `, `style=dotted, color=darkorange`, "LOCK-ORDER: lock order"} {
		if !strings.Contains(graph, want) {
			t.Errorf("graph lacks %s:\n%s", want, graph)
		}
	}
	renderDot(t, graph)
}

// TestWatchDot: watch -o dot prints a graph per report, and exits 3 at
// Ctrl-C on a deadlock.
func TestWatchDot(t *testing.T) {
	pid := startExample(t, "cycle")
	t.Cleanup(func() { removeRunOf(t, pid) })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"watch", "-o", "dot", strconv.Itoa(pid)}, nil, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var graph strings.Builder
	for lines.Scan() {
		graph.WriteString(lines.Text() + "\n")
		if lines.Text() == "}" {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-done; code != ExitDeadlock {
		t.Errorf("watch -o dot: exit %d at Ctrl-C; want %d", code, ExitDeadlock)
	}
	if !strings.HasPrefix(graph.String(), "digraph lockwatch {\n") || !strings.Contains(graph.String(), "CYCLE") {
		t.Fatalf("not the cycle's graph:\n%s", graph.String())
	}
	renderDot(t, graph.String())
}
