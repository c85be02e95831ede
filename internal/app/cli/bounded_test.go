package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/internal/app/testroot"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// The reliability goal for reading a run (issue 8): any run, and each of
// the audit's hostile runs, in at most 256 MiB (and 3 s, which benchmarks
// measure: tests never assert a time).
const goalRSS = 256 << 20

// smallRSS bounds a lockwatch process reading the small hostile runs: a
// reader without limits needs more than this for each of them.
const smallRSS = 64 << 20

// stress is set by `make stress`: the hostile runs at the audit's full size.
var stress = os.Getenv("LOCKWATCH_STRESS") != ""

// measured is one run of the lockwatch binary.
type measured struct {
	code           int
	stdout, stderr string
	maxRSS         int64         // bytes, from the child's rusage
	cpu            time.Duration // user + system
	wall           time.Duration
}

// lockwatchBin is the binary the tests and benchmarks measure: the static
// build (bins), or $LOCKWATCH_TEST_BIN, to measure another build (the one
// before the limits, for docs/reliability.md) with the same harness.
func lockwatchBin(t testing.TB) string {
	if b := os.Getenv("LOCKWATCH_TEST_BIN"); b != "" {
		return b
	}
	bin, _ := bins(t)
	return bin
}

// measure runs the lockwatch binary with args and env, and reads its
// rusage.
//
// The binary is started by a fresh process of the test binary (role
// "measure"), not by the test itself: a child started with vfork (as Go
// starts one) begins life with its parent's peak resident size in its
// rusage, and the test's own is large. The intermediate process resets its
// peak to its (small) resident size first (/proc/self/clear_refs), so the
// figure is lockwatch's peak, or that small size if larger.
func measure(t testing.TB, bin string, env []string, args ...string) measured {
	t.Helper()
	argv, _ := json.Marshal(append([]string{bin}, args...))
	out := filepath.Join(t.TempDir(), "rusage.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), env...)
	cmd.Env = append(cmd.Env, roleEnv+"=measure", "LOCKWATCH_MEASURE_ARGV="+string(argv), "LOCKWATCH_MEASURE_OUT="+out)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("measuring %v: %v: %s", args, err, e.String())
	}
	var m measured
	b, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatalf("measuring %v: %v", args, err)
	}
	m.stdout, m.stderr = o.String(), e.String()
	return m
}

// measureRole is the intermediate process of measure.
func measureRole() int {
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv("LOCKWATCH_MEASURE_ARGV")), &argv); err != nil || len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "measure: bad LOCKWATCH_MEASURE_ARGV:", err)
		return 2
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, roleEnv+"=") && !strings.HasPrefix(kv, "LOCKWATCH_MEASURE_") {
			env = append(env, kv)
		}
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "measure: resetting the peak resident size:", err)
		return 2
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stdout, os.Stderr
	begin := time.Now()
	err := cmd.Run()
	m := measuredJSON{Wall: time.Since(begin)}
	var xe *exec.ExitError
	switch {
	case errors.As(err, &xe):
		m.Code = xe.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "measure:", err)
		return 2
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(os.Getenv("LOCKWATCH_MEASURE_OUT"), b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "measure:", err)
		return 2
	}
	return 0
}

type measuredJSON struct {
	Code   int
	MaxRSS int64
	CPU    time.Duration
	Wall   time.Duration
}

// UnmarshalJSON reads what measureRole wrote.
func (m *measured) UnmarshalJSON(b []byte) error {
	var j measuredJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	m.code, m.maxRSS, m.cpu, m.wall = j.Code, j.MaxRSS, j.CPU, j.Wall
	return nil
}

// hostileRun writes the hostile run name under root (a root of runs, as
// lockwatch ps reads it) and returns its directory.
func hostileRun(t testing.TB, root, name string, spec hostile.Spec) string {
	t.Helper()
	dir := filepath.Join(root, "run-20260101-000000-1-"+name)
	if err := hostile.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

func privateRoot(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestHostileRunsBounded runs `lockwatch attach` on each of the audit's
// hostile runs, `lockwatch ps` over the one with a full process table and
// `lockwatch stacks` on a gzip bomb, each as a process of its own, and
// checks its peak memory (rusage) and that the report says what it left
// out. Small runs by default; the audit's full size under `make stress`.
func TestHostileRunsBounded(t *testing.T) {
	bin := lockwatchBin(t)
	bound := int64(smallRSS)
	if stress {
		bound = goalRSS
	}
	wantNote := map[string]string{
		"events":  "showing the last 65,536 of ",
		"waiters": "showing 4,096 of ",
		"procs":   "showing 1,024 of ",
		"locks":   "showing 4,096 of ",
		"info":    "info files were not read",
		"dicts":   "lines of stack dictionaries were skipped",
	}
	for _, name := range hostile.Names() {
		t.Run("attach/"+name, func(t *testing.T) {
			spec := hostile.Small(name)
			if stress {
				spec = hostile.Cases[name]
			}
			dir := hostileRun(t, privateRoot(t), name, spec)
			m := measure(t, bin, nil, "attach", "-o", "json", dir)
			t.Logf("attach %s: exit %d, %.1f MiB, cpu %v, wall %v", name, m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
			if m.code != ExitOK && m.code != ExitDeadlock {
				t.Fatalf("exit %d: %s", m.code, m.stderr)
			}
			if m.maxRSS > bound {
				t.Errorf("lockwatch attach took %d MiB; want at most %d MiB", m.maxRSS>>20, bound>>20)
			}
			r := readReport(t, []byte(m.stdout))
			if !strings.Contains(strings.Join(r.Notes, "\n"), wantNote[name]) {
				t.Errorf("notes %q; want one saying %q", r.Notes, wantNote[name])
			}
			if name == "events" && !strings.Contains(strings.Join(r.Notes, "\n"), "use --events N for more") {
				t.Errorf("notes %q; want the --events advice", r.Notes)
			}
		})
	}
	t.Run("ps/procs", func(t *testing.T) {
		spec := hostile.Small("procs")
		if stress {
			spec = hostile.Cases["procs"]
		}
		root := privateRoot(t)
		dir := hostileRun(t, root, "procs", spec)
		m := measure(t, bin, []string{arena.EnvRoot + "=" + root}, "ps", "--all", "-o", "json")
		t.Logf("ps: exit %d, %.1f MiB, cpu %v, wall %v", m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
		if m.code != ExitOK {
			t.Fatalf("exit %d: %s", m.code, m.stderr)
		}
		if m.maxRSS > bound {
			t.Errorf("lockwatch ps took %d MiB; want at most %d MiB", m.maxRSS>>20, bound>>20)
		}
		var out psOutput
		if err := json.Unmarshal([]byte(m.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Runs) != 1 || out.Runs[0].Dir != dir || len(out.Runs[0].Processes) != arena.DefaultReadProcesses {
			t.Errorf("ps: got %+v; want the run, with %d processes", out.Runs, arena.DefaultReadProcesses)
		}
	})
	t.Run("stacks/bomb", func(t *testing.T) {
		size := int64(1 << 30)
		if stress {
			size = 4500 << 20 // the audit's: 4.5 GB from 9.4 MB
		}
		path := filepath.Join(t.TempDir(), "bomb.pb.gz")
		if err := os.WriteFile(path, hostile.GzipBomb(size), 0o600); err != nil {
			t.Fatal(err)
		}
		m := measure(t, bin, nil, "stacks", path)
		t.Logf("stacks: exit %d, %.1f MiB, cpu %v, wall %v", m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
		if m.code != ExitUsage || !strings.Contains(m.stderr, "gzip bomb") {
			t.Errorf("exit %d, %q; want exit 2 naming a gzip bomb", m.code, m.stderr)
		}
		if m.maxRSS > bound {
			t.Errorf("lockwatch stacks took %d MiB; want at most %d MiB", m.maxRSS>>20, bound>>20)
		}
	})
}

// TestEventsFlag: --events N reads more of the locks' rings (N events of
// all locks together), and nothing is said when the rings hold no more than
// that.
func TestEventsFlag(t *testing.T) {
	// 128 locks, each ring (1,024 slots) full: 131,072 events.
	dir := hostileRun(t, privateRoot(t), "events", hostile.Spec{Procs: 8, Locks: 128, Waiters: 8, Events: 1 << 17,
		UsedProcs: 1, UsedLocks: 128, LockEvents: 1024})
	for _, tt := range []struct {
		args []string
		note bool
	}{
		{nil, true},
		{[]string{"--events", "200000"}, false},
	} {
		code, out, errs := lockwatch(t, append(tt.args, "attach", "-o", "json", dir)...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errs)
		}
		r := readReport(t, []byte(out))
		if got := strings.Contains(strings.Join(r.Notes, "\n"), "of 131,072 events"); got != tt.note {
			t.Errorf("%v: notes %q; want the events note: %v", tt.args, r.Notes, tt.note)
		}
	}
	if code, _, errs := lockwatch(t, "--events", "0", "attach", dir); code != ExitUsage || !strings.Contains(errs, "--events") {
		t.Errorf("--events 0: exit %d, %q; want exit 2 about --events", code, errs)
	} // A boolean report flag before the command does not swallow its name.
	if code, _, errs := lockwatch(t, "--text-dumps", "attach", "-o", "json", dir); code != ExitOK {
		t.Errorf("--text-dumps before attach: exit %d, %q; want the report", code, errs)
	}
}

// TestPsFindsFallbackRuns: when the default root is another user's, runs
// made in the private fallback are listed by ps. The bases are the test's
// own: XDG_RUNTIME_DIR and TMPDIR point into it; /dev/shm's
// lockwatch-UID-* (if any) are this user's private fallbacks and may be
// listed too, so the test looks for its own run only.
func TestPsFindsFallbackRuns(t *testing.T) {
	base := t.TempDir()
	fallback := filepath.Join(base, fmt.Sprintf("lockwatch-%d-test", os.Getuid()))
	if err := os.Mkdir(fallback, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := hostileRun(t, fallback, "fallback", hostile.Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 1})
	t.Setenv(arena.EnvRoot, "")
	t.Setenv("XDG_RUNTIME_DIR", base)
	found := false
	for _, d := range runDirs() {
		found = found || d == dir
	}
	if !found {
		t.Errorf("runDirs: %s not listed", dir)
	}
}

var bigRuns = sync.OnceValues(func() (string, error) {
	root, err := testroot.TempDir("lockwatch-hostile-")
	if err != nil {
		return "", err
	}
	for _, name := range hostile.Names() {
		os.Mkdir(filepath.Join(root, name), 0o700)
		if err := hostile.Write(filepath.Join(root, name, "run-20260101-000000-1-0"), hostile.Cases[name]); err != nil {
			return root, err
		}
	}
	for name, data := range amplifying() {
		if err := os.WriteFile(filepath.Join(root, name), data, 0o600); err != nil {
			return root, err
		}
	}
	return root, os.WriteFile(filepath.Join(root, "bomb.pb.gz"), hostile.GzipBomb(4500<<20), 0o600)
})

// amplifying is the audit's inputs that are small to read and large to
// build, at full size, by file name.
func amplifying() map[string][]byte {
	return map[string][]byte{
		"amplifying.pb.gz": hostile.AmplifyingProfile(16<<20 - 1024),
		"tiny.txt":         hostile.TinyGoroutines(63 << 20),
		"random":           hostile.RandomBytes(64<<20, 7),
	}
}

// BenchmarkHostile runs lockwatch (a process per iteration) on each of the
// audit's hostile runs at full size: attach on each, ps over the full
// process table, stacks on the 4.5 GB gzip bomb. It reports the child's
// peak resident memory and CPU time beside the wall time. Set
// LOCKWATCH_TEST_BIN to measure another build. The runs (2.3 GB of files)
// are written once, under $TMPDIR, and removed at the end.
func BenchmarkHostile(b *testing.B) {
	root, err := bigRuns() // kept for every -count; TestMain removes them
	if err != nil {
		b.Fatal(err)
	}
	bin := lockwatchBin(b)
	bench := func(name string, env []string, args ...string) {
		b.Run(name, func(b *testing.B) {
			var rss int64
			var cpu time.Duration
			for b.Loop() {
				m := measure(b, bin, env, args...)
				if m.code != ExitOK && m.code != ExitDeadlock && !strings.HasPrefix(name, "stacks") {
					b.Fatalf("exit %d: %s", m.code, m.stderr)
				}
				rss = max(rss, m.maxRSS)
				cpu += m.cpu
			}
			b.ReportMetric(float64(rss)/(1<<20), "MiB-maxrss")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
	for _, name := range hostile.Names() {
		bench("attach/"+name, nil, "attach", "-o", "json", filepath.Join(root, name, "run-20260101-000000-1-0"))
	}
	bench("ps/procs", []string{arena.EnvRoot + "=" + filepath.Join(root, "procs")}, "ps", "--all", "-o", "json")
	bench("stacks/bomb", nil, "stacks", filepath.Join(root, "bomb.pb.gz"))
	bench("stacks/amplifying-profile", nil, "stacks", filepath.Join(root, "amplifying.pb.gz"))
	bench("stacks/tiny-goroutines", nil, "stacks", filepath.Join(root, "tiny.txt"))
	bench("stacks/tiny-goroutines-json", nil, "stacks", "-o", "json", filepath.Join(root, "tiny.txt"))
	bench("stacks/random", nil, "stacks", filepath.Join(root, "random"))
}
