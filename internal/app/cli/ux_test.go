package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// lockwatchIn runs Main with stdin.
func lockwatchIn(t testing.TB, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e strings.Builder
	code = Main(context.Background(), args, stdin, &o, &e)
	return code, o.String(), e.String()
}

const panicDump = "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n\n" +
	"goroutine 7 [chan receive, 2 minutes]:\nmain.worker()\n\t/app/w.go:9 +0x1\ncreated by main.main in goroutine 1\n\t/app/main.go:4 +0x2\n\nexit status 2\n"

// TestStacksStdin: a dump piped in, with no argument, with -, and as
// /dev/stdin, as panicparse users pipe one.
func TestStacksStdin(t *testing.T) {
	for _, args := range [][]string{{"stacks"}, {"stacks", "-"}} {
		code, stdout, stderr := lockwatchIn(t, strings.NewReader(panicDump), args...)
		if code != 0 {
			t.Fatalf("%q: got exit %d; want 0\n%s", args, code, stderr)
		}
		for _, want := range []string{"stdin: panic: boom\n", "stdin: 2 goroutines in 2 groups (text)\n", "1 goroutine [chan receive]; longest wait 2m0s\n"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%q: got\n%s\nwant it to contain %q", args, stdout, want)
			}
		}
	}
	lw, _ := bins(t)
	cmd := exec.Command(lw, "stacks", "/dev/stdin")
	cmd.Stdin = strings.NewReader(panicDump) // a pipe
	out, err := cmd.CombinedOutput()
	if code := exitCodeOf(t, err); code != 0 || !strings.Contains(string(out), "/dev/stdin: panic: boom") {
		t.Errorf("stacks /dev/stdin: got exit %d\n%s", code, out)
	}
}

// TestStacksSeveralDumpsCutTimestamps: two dumps in one file are shown
// apart; a dump cut mid-line says so; a timestamp before every line is read.
func TestStacksSeveralDumpsCutTimestamps(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two.txt")
	os.WriteFile(two, []byte(panicDump+"panic: again\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:6 +0x1d\n\ngoroutine 9 [select]:\nmain.l"), 0o600)
	code, stdout, stderr := lockwatch(t, "stacks", two)
	if code != 0 {
		t.Fatalf("got exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"the input holds 2 dumps, shown apart",
		two + ", dump 1 of 2: panic: boom\n", two + ", dump 1 of 2: 2 goroutines in 2 groups",
		two + ", dump 2 of 2: panic: again\n", two + ", dump 2 of 2: 2 goroutines in 2 groups",
		"note: the input ends inside this dump",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("got\n%s\nwant it to contain %q", stdout, want)
		}
	}
	if n := strings.Count(stdout, "note: the input ends inside this dump"); n != 1 {
		t.Errorf("got %d cut notes; want 1 (the second dump's)", n)
	}
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSuffix(panicDump, "\n"), "\n") {
		b.WriteString("2026-11-25T19:58:05." + strconv.Itoa(100000+i) + "Z " + l + "\n")
	}
	code, stdout, stderr = lockwatchIn(t, strings.NewReader(b.String()), "stacks")
	if code != 0 || !strings.Contains(stdout, "stdin: panic: boom") || !strings.Contains(stdout, "2 goroutines in 2 groups") {
		t.Errorf("timestamped dump: got exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestStacksJSON(t *testing.T) {
	code, stdout, stderr := lockwatchIn(t, strings.NewReader(panicDump), "stacks", "-o", "json")
	if code != 0 {
		t.Fatalf("got exit %d\n%s", code, stderr)
	}
	var out struct {
		Schema string `json:"schema"`
		Dumps  []struct {
			Reason string `json:"reason"`
			Groups []struct {
				MaxWaitMS *int64 `json:"max_wait_ms"`
			} `json:"groups"`
		} `json:"dumps"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Schema != StacksSchema || len(out.Dumps) != 1 || out.Dumps[0].Reason != "panic: boom" {
		t.Fatalf("got %s; want schema %s, one dump with its reason", stdout, StacksSchema)
	}
	var waits []int64
	for _, g := range out.Dumps[0].Groups {
		if g.MaxWaitMS == nil {
			t.Fatalf("a group without max_wait_ms:\n%s", stdout)
		}
		waits = append(waits, *g.MaxWaitMS)
	}
	if waits[0] != 120000 && waits[1] != 120000 {
		t.Errorf("got max_wait_ms %v; want 120000 (2 minutes) for the worker", waits)
	}
	if strings.Contains(stdout, `"max_wait"`) {
		t.Errorf("got a max_wait field in nanoseconds:\n%s", stdout)
	}
}

// TestStacksProbeAndLabels: a live process's stacks leave out the probe's
// own goroutines (shown with --all) and say which lock a goroutine waits for.
func TestStacksProbeAndLabels(t *testing.T) {
	dir := runDir(t)
	ab, abIn, abOut := child(t, "ab", dir, probe.EnvDir+"="+dir)
	expectLine(t, abOut, "locked")
	_, baIn, baOut := child(t, "ba", dir)
	expectLine(t, baOut, "locked")
	abIn.Write([]byte("go\n"))
	baIn.Write([]byte("go\n"))
	pid := strconv.Itoa(ab.Process.Pid)
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, stdout, stderr := lockwatch(t, "stacks", pid)
		if code != 0 {
			t.Fatalf("got exit %d\n%s", code, stderr)
		}
		if strings.Contains(stdout, `waiting for lock "lock.b"`) {
			if strings.Contains(stdout, "lockwatch/lockwatch/probe.") {
				t.Errorf("the probe's goroutines are shown without --all:\n%s", stdout)
			}
			if !regexp.MustCompile(`; \d+ goroutines? of lockwatch's probe not shown \(--all shows them\)`).MatchString(stdout) {
				t.Errorf("no note of the probe's goroutines left out:\n%s", stdout)
			}
			_, all, _ := lockwatch(t, "stacks", "--all", pid)
			if !strings.Contains(all, "lockwatch/lockwatch/probe.") {
				t.Errorf("stacks --all: the probe's goroutines are missing:\n%s", all)
			}
			// The text dump has no labels: the lock comes from the run's
			// waiter records (it was missing with --text).
			_, text, _ := lockwatch(t, "stacks", "--text", pid)
			if !strings.Contains(text, `waiting for lock "lock.b"`) {
				t.Errorf("stacks --text: no goroutine waiting for lock.b:\n%s", text)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine waiting for lock.b after %v:\n%s", probablyStillBlocked, stdout)
		}
		time.Sleep(quiescent)
	}
}

// TestCleanErrors: one line each, pointing at the help of the command.
func TestCleanErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"psx"}, `lockwatch: unknown command "psx" (did you mean "ps"?); see 'lockwatch --help' for the commands` + "\n"},
		{[]string{"attach"}, "see 'lockwatch attach --help'\n"},
		{[]string{"attach", "1", "2"}, "see 'lockwatch attach --help'\n"},
		{[]string{"stacks", "a", "b"}, "see 'lockwatch stacks --help'\n"},
		{[]string{"ps", "x"}, "see 'lockwatch ps --help'\n"},
		{[]string{"watch", "--bogus", "1"}, "see 'lockwatch watch --help'\n"},
		{[]string{"prune", "x"}, "see 'lockwatch prune --help'\n"},
	}
	for _, tt := range tests {
		code, _, stderr := lockwatch(t, tt.args...)
		if code != ExitUsage || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, tt.want) || strings.Contains(stderr, "; ;") {
			t.Errorf("%q: got exit %d, %q; want exit 2, one line ending %q", tt.args, code, stderr, tt.want)
		}
	}
	// attach of a directory that holds no run says so once.
	_, _, stderr := lockwatch(t, "attach", t.TempDir())
	if n := strings.Count(stderr, "no lockwatch run") + strings.Count(stderr, "not a lockwatch run"); n != 1 {
		t.Errorf("attach of an empty directory: got %q; want \"not a lockwatch run\" once", stderr)
	}
}

// TestRunExitCodes: PROGRAM's own statuses pass through; lockwatch's own
// are 124-127, as timeout(1)'s.
func TestRunExitCodes(t *testing.T) {
	prefix := "-" + strconv.Itoa(os.Getpid()) + "-"
	before := ourRuns(t, prefix)
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"run", "--", "sh", "-c", "exit 3"}, 3},
		{[]string{"run", "--", "sh", "-c", "exit 2"}, 2},
		{[]string{"run", "--", "sh", "-c", "exit 0"}, 0},
		{[]string{"run", "--", "sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"run", "--", "/nonexistent/program"}, ExitRunNotFound},
		{[]string{"run", "--", "no-such-program-lockwatch-test"}, ExitRunNotFound},
		{[]string{"run", "--", t.TempDir()}, ExitRunCannotExec},
		{[]string{"run", "--bogus", "--", "true"}, ExitRunFailed},
		{[]string{"run"}, ExitRunFailed},
		{[]string{"run", "--on-deadlock=maybe", "--", "true"}, ExitRunFailed},
	}
	for _, tt := range tests {
		code, _, stderr := lockwatch(t, tt.args...)
		if code != tt.want {
			t.Errorf("%q: got exit %d; want %d\n%s", tt.args, code, tt.want, stderr)
		}
	}
	if after := ourRuns(t, prefix); len(after) > len(before) {
		t.Errorf("run directories left behind: %q (before: %q)", after, before)
	}
}

// ourRuns lists the run directories under the default root that this test
// process made (their names carry its pid).
func ourRuns(t testing.TB, infix string) []string {
	t.Helper()
	var out []string
	for _, d := range runDirs() {
		if strings.Contains(filepath.Base(d), infix) {
			out = append(out, d)
		}
	}
	return out
}

// TestRunNothingJoined: run says, while PROGRAM runs, that nothing joined
// the run; its final report exists, in JSON too, and says who joined.
func TestRunNothingJoined(t *testing.T) {
	lw, _ := bins(t)
	cmd := exec.Command(lw, "run", "--", "cat")
	cmd.Env = cleanEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(errPipe)
	first := make(chan string, 1)
	go func() {
		line, _ := lines.ReadString('\n')
		first <- line
	}()
	var line string
	select {
	case line = <-first:
	case <-time.After(probablyStillBlocked):
		in.Close() // cat ends, and with it the run
		t.Fatalf("nothing said in %v that no process joined the run", probablyStillBlocked)
	}
	if !strings.Contains(line, "no process has joined the run") || !strings.Contains(line, "probe.Start") {
		t.Fatalf("got %q; want the line that says nothing joined the run, and what to do", line)
	}
	in.Close() // cat ends only now: the line came while it ran
	rest, _ := io.ReadAll(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, rest)
	}
	if !strings.Contains(string(rest), "lockwatch: no deadlock found; no process joined the run") {
		t.Errorf("got final lines %q; want one saying no process joined", rest)
	}

	code, _, stderr := lockwatch(t, "run", "-o", "json", "--", "true")
	if code != 0 {
		t.Fatalf("run -o json -- true: got exit %d\n%s", code, stderr)
	}
	r := readReport(t, []byte(stderr))
	if r.Schema != report.Schema || len(r.Notes) == 0 || !strings.Contains(r.Notes[len(r.Notes)-1], "no process joined the run") {
		t.Errorf("run -o json -- true: got %+v; want a report noting that no process joined", r)
	}
}

// TestRunJoined: the final line names who joined.
func TestRunJoined(t *testing.T) {
	lw, _ := bins(t)
	cmd := exec.Command(lw, "run", "--", os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), roleEnv+"=joiner")
	out, err := cmd.CombinedOutput()
	if code := exitCodeOf(t, err); code != 0 || !strings.Contains(string(out), "lockwatch: no deadlock found; 1 process joined the run: joiner\n") {
		t.Errorf("got exit %d, %q; want 0 and the final line naming the joiner", code, out)
	}
	if strings.Contains(string(out), "has not joined") {
		t.Errorf("got %q; want no line saying a process has not joined", out)
	}
}

func TestSettler(t *testing.T) {
	holder := &report.Party{PID: 10}
	partial := &report.Report{Findings: []report.Finding{{Kind: report.DeadHolder, Lock: "q", Holder: holder, Waiters: []report.Party{}}}}
	full := &report.Report{Findings: []report.Finding{{Kind: report.DeadHolder, Lock: "q", Holder: holder,
		Waiters: []report.Party{{PID: 11, Goroutine: 3}}}}}
	more := &report.Report{Findings: []report.Finding{{Kind: report.DeadHolder, Lock: "q", Holder: holder,
		Waiters: []report.Party{{PID: 11, Goroutine: 3}, {PID: 12, Goroutine: 1}}}}}
	clock := t0()
	s := settler{now: func() time.Time { return clock }}
	steps := []struct {
		r     *report.Report
		after time.Duration
		want  bool
	}{
		{partial, 0, false},                      // first reading: not settled
		{partial, 250 * time.Millisecond, false}, // settled, but nobody waits yet
		{full, 250 * time.Millisecond, false},    // changed: not settled
		{full, 250 * time.Millisecond, true},     // settled with a waiter: reported
		{full, 250 * time.Millisecond, false},    // reported already
		{more, 250 * time.Millisecond, false},    // a new waiter
		{more, 250 * time.Millisecond, true},     // settled, differs from the report: reported again
		{partial, 250 * time.Millisecond, false}, // the waiters left
		{partial, 250 * time.Millisecond, false}, // nobody waits: not yet
		{partial, lonelyWait, true},              // nobody waits, for lonelyWait: reported
	}
	for i, st := range steps {
		clock = clock.Add(st.after)
		if got := s.ready(st.r); got != st.want {
			t.Errorf("reading %d: ready %v; want %v", i, got, st.want)
		}
	}
}

func t0() time.Time { return time.Date(2026, 11, 25, 19, 58, 5, 0, time.UTC) }

func TestJoinedLine(t *testing.T) {
	got := joinedLine([]report.ProcRow{{PID: 1, Role: "main"}, {PID: 2, Role: "worker"}, {PID: 3, Role: "worker"}, {PID: 4, Command: "python3"}})
	if want := "4 processes joined the run: main, 2 worker, python3"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := joinedLine(nil); !strings.HasPrefix(got, "no process joined the run") {
		t.Errorf("got %q; want no process joined", got)
	}
}

func TestVersionAndExamples(t *testing.T) {
	code, stdout, _ := lockwatch(t, "--version")
	if code != 0 || !regexp.MustCompile(`^lockwatch \S+.* go1\.\S+ linux/\S+\n$`).MatchString(stdout) {
		t.Errorf("--version: got exit %d, %q; want one line: lockwatch VERSION ... goVERSION linux/ARCH", code, stdout)
	}
	for _, c := range []string{"run", "attach", "watch", "ps", "stacks", "prune", "holders", "version"} {
		_, stdout, _ := lockwatch(t, c, "--help")
		if !strings.Contains(stdout, "Examples:\n  lockwatch "+c) {
			t.Errorf("%s --help: no Examples section:\n%s", c, stdout)
		}
	}
}

// TestPrune: ended clean runs and never-joined directories go; runs with
// something to diagnose stay unless --all; live runs always stay.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o700)
	mk := func() string {
		d, err := arena.NewRunDir(root)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	clean := mk()
	if r, err := lockreg.Open(clean, lockreg.Options{}); err != nil {
		t.Fatal(err)
	} else {
		r.Close()
	}
	unjoinedOld, unjoinedNew := mk(), mk()
	old := time.Now().Add(-2 * unjoinedGrace)
	os.Chtimes(unjoinedOld, old, old)
	live := mk()
	reg, err := lockreg.Open(live, lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	died := mk()
	c, _, out := child(t, "ab", died, probe.EnvDir+"="+died)
	expectLine(t, out, "locked")
	c.Process.Kill()
	c.Wait()

	verdicts := func(all, dry bool) map[string]bool {
		vs, err := pruneRuns(root, all, dry)
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]bool)
		for _, v := range vs {
			m[v.dir] = v.remove
		}
		return m
	}
	want := map[string]bool{clean: true, unjoinedOld: true, unjoinedNew: false, live: false, died: false}
	if got := verdicts(false, true); !mapsEqual(got, want) {
		t.Errorf("dry run: got %v; want %v", got, want)
	}
	for _, d := range []string{clean, unjoinedOld} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("dry run removed %s", d)
		}
	}
	verdicts(false, false)
	for d, gone := range want {
		if _, err := os.Stat(d); (err == nil) == gone {
			t.Errorf("%s: exists %v after prune; want %v", filepath.Base(d), err == nil, !gone)
		}
	}
	if got := verdicts(true, false); !got[died] || got[live] {
		t.Errorf("prune --all: got %v; want the dead run removed, the live one kept", got)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestFitLine(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  string
	}{
		{"short  ", 80, "short"},
		{strings.Repeat("x", 50), 40, strings.Repeat("x", 39) + cutMark},
		{strings.Repeat("x", 40), 40, strings.Repeat("x", 40)},
		{"\x1b[1m" + strings.Repeat("y", 45) + "\x1b[0m", 40, "\x1b[1m" + strings.Repeat("y", 39) + cutMark + safeout.Ctl("\x1b[0m")},
		{"\t" + strings.Repeat("z", 40), 40, "\t" + strings.Repeat("z", 31) + cutMark},
		{strings.Repeat("x", 50), 0, strings.Repeat("x", 50)},
	}
	for _, tt := range tests {
		if got := string(fitLine([]byte(tt.in), tt.width)); got != tt.want {
			t.Errorf("fitLine(%q, %d): got %q; want %q", tt.in, tt.width, got, tt.want)
		}
	}
}

// TestPSTable: one row per run, findings counted, no row per dead process,
// no "dead, died", and every line within the terminal's width.
func TestPSTable(t *testing.T) {
	out := psOutput{Schema: PSSchema, Probed: []psProbed{}}
	for i := range 3 {
		run := psRun{Name: fmt.Sprintf("run-20261125-19580%d-2728%d-0", i, i), State: "ended", Alive: 0, Ended: 9,
			Findings: []psFinding{{Kind: "dead-holder", Count: 1}, {Kind: "stale-waiter", Count: 7}}}
		for p := range 9 {
			run.Processes = append(run.Processes, psProcess{ProcRow: report.ProcRow{PID: 1000*i + p, Role: "worker", State: "dead", Exit: "died"}})
		}
		out.Runs = append(out.Runs, run)
	}
	live := psRun{Name: "run-20261125-200000-3000-0", State: "running", Alive: 6, Ended: 1}
	for p := range 6 {
		live.Processes = append(live.Processes, psProcess{ProcRow: report.ProcRow{PID: 3000 + p, Role: "worker", State: "alive", Alive: true}, Probe: p != 2})
	}
	out.Runs = append(out.Runs, live)
	for _, tt := range []struct {
		cols int
		want []string
	}{
		{100, []string{"1 dead-holder, 7 stale-waiter", "0 alive, 9 ended", "6 alive, 1 ended  6 more\n"}},
		{200, []string{"1 dead-holder, 7 stale-waiter", "3002 worker (no probe), 3003 worker, 2 more\n"}},
	} {
		t.Setenv("COLUMNS", strconv.Itoa(tt.cols))
		var b strings.Builder
		a := &app{stdout: &b}
		if err := a.psTable(out, 0); err != nil {
			t.Fatal(err)
		}
		got := b.String()
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != 1+len(out.Runs) {
			t.Errorf("got %d lines; want a header and one per run:\n%s", len(lines), got)
		}
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > tt.cols || strings.HasSuffix(l, " ") {
				t.Errorf("%d columns: line of %d columns (or ending in a blank): %q", tt.cols, n, l)
			}
		}
		for _, want := range tt.want {
			if !strings.Contains(got, want) {
				t.Errorf("%d columns: got\n%s\nwant it to contain %q", tt.cols, got, want)
			}
		}
		if strings.Contains(got, "dead, died") || strings.Count(got, "stale-waiter") != 3 {
			t.Errorf("got\n%s\nwant no \"dead, died\", and each run's findings once", got)
		}
	}
}

func TestPSJSONSchema(t *testing.T) {
	code, stdout, stderr := lockwatch(t, "ps", "-o", "json")
	if code != 0 {
		t.Fatalf("got exit %d\n%s", code, stderr)
	}
	var out struct {
		Schema string            `json:"schema"`
		Runs   []json.RawMessage `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Schema != PSSchema || out.Runs == nil {
		t.Errorf("got %s (%v); want schema %q and a runs list", stdout, err, PSSchema)
	}
}

// TestAttachByNameAndDeadPID: attach takes the name ps prints, and the pid
// of a dead process of a run (the dead holder a finding names).
func TestAttachByNameAndDeadPID(t *testing.T) {
	dir := rootRun(t)
	c, _, out := child(t, "ab", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "locked")
	pid := c.Process.Pid
	c.Process.Kill()
	c.Wait()
	code, stdout, stderr := lockwatch(t, "attach", "-o", "json", filepath.Base(dir))
	if code != ExitDeadlock || readReport(t, []byte(stdout)).Run != dir {
		t.Errorf("attach %s: got exit %d\n%s%s; want the report of %s", filepath.Base(dir), code, stdout, stderr, dir)
	}
	code, stdout, stderr = lockwatch(t, "attach", "-o", "json", strconv.Itoa(pid))
	if code != ExitDeadlock {
		t.Fatalf("attach %d (dead): got exit %d\n%s", pid, code, stderr)
	}
	if r := readReport(t, []byte(stdout)); r.Run != dir || len(r.Findings) == 0 || r.Findings[0].Holder == nil || r.Findings[0].Holder.PID != pid {
		t.Errorf("attach %d: got %+v; want the run %s with pid %d as the dead holder", pid, r.Findings, dir, pid)
	}
}

// TestStatusLineText: plurals, and the deadlock once found, on the bottom
// row (the sequence saves the cursor, writes row 24, restores it).
func TestStatusLineText(t *testing.T) {
	var b strings.Builder
	s := &statusLine{w: safeout.NewWriter(&b), on: true, rows: 24, cols: 200, started: time.Now()}
	r := &report.Report{Processes: []report.ProcRow{{PID: 1, Alive: true}}, Locks: []report.LockRow{{Name: "q", Holder: &report.Party{PID: 1}}}}
	s.draw(r, nil)
	if !strings.HasPrefix(b.String(), "\x1b7\x1b[24;1H\x1b[K") || !strings.HasSuffix(b.String(), "\x1b8") ||
		!strings.Contains(b.String(), "lockwatch: 1 process, 1 lock held, 0 waiting, ") {
		t.Errorf("got %q; want \"1 process, 1 lock held\" on row 24, the cursor saved and restored", b.String())
	}
	b.Reset()
	found := &report.Report{Findings: []report.Finding{{Kind: report.DeadHolder, Lock: "q"}}}
	r.Processes = append(r.Processes, report.ProcRow{PID: 2, Alive: true})
	s.draw(r, found)
	if !strings.Contains(b.String(), `lockwatch: DEADLOCK (dead-holder on "q", above); 2 processes, 1 lock held`) {
		t.Errorf("got %q; want the deadlock shown", b.String())
	}
}
