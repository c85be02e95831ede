package probe

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"time"
)

// Programs that start the probe themselves (probe.Start, outside lockwatch
// run) are built without cgo: Go's runtime never ends a cgo program for a
// deadlock (a -race build is one), with sync either, and the probe then
// never stands down.

// programs are the test programs built once per test binary, by package.
var programs struct {
	mu   sync.Mutex
	dir  string
	bins map[string]string
}

// buildProgram builds ./testdata/<pkg> without cgo (a test package as its
// test binary) and returns the binary's path.
func buildProgram(t testing.TB, pkg string, test bool) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	programs.mu.Lock()
	defer programs.mu.Unlock()
	if bin, ok := programs.bins[pkg]; ok {
		return bin
	}
	if programs.dir == "" {
		d, err := os.MkdirTemp("", "probe-programs-")
		if err != nil {
			t.Fatal(err)
		}
		programs.dir, programs.bins = d, map[string]string{}
	}
	bin := filepath.Join(programs.dir, pkg)
	args := []string{"build", "-o", bin, "./testdata/" + pkg}
	if test {
		args = []string{"test", "-c", "-o", bin, "./testdata/" + pkg}
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	programs.bins[pkg] = bin
	return bin
}

// removePrograms removes the programs buildProgram built (TestMain).
func removePrograms() {
	programs.mu.Lock()
	defer programs.mu.Unlock()
	if programs.dir != "" {
		_ = os.RemoveAll(programs.dir)
	}
}

// A started program program: its stdout is read line by line.
type program struct {
	cmd    *exec.Cmd
	lines  *bufio.Scanner
	stderr *syncBuffer
	waited chan struct{} // closed once Wait returned, with err
	err    error
}

// startProgram starts bin with args, in a run root of its own. Its stdout is
// a pipe of the test's own, so that Wait does not wait for its reader.
func startProgram(t testing.TB, bin string, args ...string) *program {
	t.Helper()
	return startProgramEnv(t, bin, nil, args...)
}

// startProgramEnv is startProgram with env added to the program's
// environment.
func startProgramEnv(t testing.TB, bin string, env []string, args ...string) *program {
	t.Helper()
	// Short: the socket's path must fit a unix socket address.
	root, err := os.MkdirTemp("", "lw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &program{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, waited: make(chan struct{}), lines: bufio.NewScanner(r)}
	c.cmd.Env = append(append(os.Environ(), "LOCKWATCH_ROOT="+root, EnvDir+"="), env...)
	c.cmd.Stdout, c.cmd.Stderr = w, c.stderr
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.waited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.waited
		r.Close()
	})
	return c
}

// line returns the program's next line of stdout ("" at its end).
func (c *program) line() string {
	if !c.lines.Scan() {
		return ""
	}
	return c.lines.Text()
}

// ready reads the program's "ready SOCKET" line and returns the socket.
func (c *program) ready(t testing.TB) string {
	t.Helper()
	for {
		l := c.line()
		if sock, ok := strings.CutPrefix(l, "ready "); ok {
			return sock
		}
		if l == "" {
			<-c.waited
			t.Fatalf("the program ended (%v) without a ready line: %s", c.err, c.stderr.String())
		}
	}
}

// deadlockBound is how long a deadlocked program may take to end before the
// test gives up on it: it ends once the probe's looks agree (a second or
// two); the bound only keeps a broken probe from hanging the test.
const deadlockBound = time.Minute

// exit waits for the program to end and returns its exit status.
func (c *program) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-c.waited:
	case <-time.After(deadlockBound):
		t.Fatalf("the program still runs after %v:\n%s", deadlockBound, c.stderr.String())
	}
	var xe *exec.ExitError
	switch {
	case c.err == nil:
		return 0
	case errors.As(c.err, &xe):
		return xe.ExitCode()
	}
	t.Fatal(c.err)
	return -1
}

// runtimeDeadlock is what Go's runtime says as it ends a deadlocked program.
const runtimeDeadlock = "fatal error: all goroutines are asleep - deadlock!"

// TestDeadlockedProgramEnds: a program that started the probe itself,
// outside lockwatch run, and whose goroutines all block (on a channel, an
// empty select, a sync.Mutex, drop-in mutexes in a cycle) ends as it would
// without the probe: Go's runtime says "all goroutines are asleep -
// deadlock!", with every goroutine's stack, and exits with status 2. The
// probe says nothing before: only the runtime proves the deadlock (and
// a drop-in waiter's stuck line, a wait observed, may come first when the
// looks take past the drop-in's 10 s on a loaded machine). It ends with a
// Registry.StuckAfter of 300 ms too, whose stuck lines come first then (the
// look at the drop-in waiters, every 75 ms, must not keep the probe's looks
// from agreeing). How soon it ends, with the machine loaded, is in
// docs/benchmarks.md (with 200 threads too: the blocked program's threads
// mode, left out here, since on a loaded machine it once took more than
// the bound); the bound here only catches a hang.
func TestDeadlockedProgramEnds(t *testing.T) {
	bin := buildProgram(t, "blocked", false)
	for _, mode := range []string{"chan", "select", "sync", "dropin", "stuck"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := startProgram(t, bin, mode)
			c.ready(t)
			code := c.exit(t)
			stderr := c.stderr.String()
			before, rest, ok := strings.Cut(stderr, runtimeDeadlock)
			if code != 2 || !ok {
				t.Fatalf("the program ended with status %d; want 2 and the runtime's deadlock:\n%s", code, stderr)
			}
			// A drop-in waiter past StuckAfter (10 s by default, reached
			// on a loaded machine before the looks agree) is said, as
			// always: a wait observed, no claim of a deadlock.
			if mode == "stuck" || mode == "dropin" {
				for _, l := range strings.Split(before, "\n") {
					if l != "" && !strings.Contains(l, " has waited ") {
						t.Errorf("something but the stuck lines was said before the runtime's message:\n%s", stderr)
						break
					}
				}
			} else if strings.TrimSpace(before) != "" {
				t.Errorf("something was said before the runtime's message:\n%s", stderr)
			}
			if !strings.Contains(rest, "goroutine 1 [") {
				t.Errorf("the runtime printed no stacks:\n%s", rest)
			}
		})
	}
}

// TestDeadlockedTestEnds: `go test -timeout 0` of a test that deadlocks,
// in a suite whose TestMain starts the probe, ends at once with the
// runtime's deadlock, as it does without the probe. (With a -timeout, the
// testing package's alarm is a pending timer: Go's runtime does not end the
// test before it fires, with sync either, and neither does the probe.)
func TestDeadlockedTestEnds(t *testing.T) {
	bin := buildProgram(t, "deadtest", true)
	c := startProgram(t, bin, "-test.timeout=0", "-test.run=^TestDeadlock$")
	code := c.exit(t)
	stderr := c.stderr.String()
	if code != 2 || !strings.Contains(stderr, runtimeDeadlock) {
		t.Fatalf("the test binary ended with status %d; want 2 and the runtime's deadlock:\n%s", code, stderr)
	}
}

// TestGCOffKeepsTheProbe: with garbage collection off (GOGC=off), a probe
// that stood down would never come back (it waits for a collection), so the
// probe of a deadlocked program does not stand down by itself: its loop
// says why at each look, it serves on, and the program stays (as any
// deadlocked program with a socket open does; lockwatch run still asks it).
func TestGCOffKeepsTheProbe(t *testing.T) {
	bin := buildProgram(t, "blocked", false)
	c := startProgramEnv(t, bin, []string{"GOGC=off"}, "chan")
	sock := c.ready(t)
	for seen := 0; seen < agreeLooks+1; {
		l := c.line()
		switch {
		case l == "":
			<-c.waited
			t.Fatalf("the program ended after %d looks (%v):\n%s", seen, c.err, c.stderr.String())
		case strings.HasPrefix(l, "look asleep"):
			t.Fatalf("the probe looked at the program with GOGC=off: %q", l)
		case strings.Contains(l, gcOff):
			seen++
		}
	}
	if info, err := (&probeclient.Client{Path: sock}).Info(context.Background()); err != nil || info.PID != c.cmd.Process.Pid {
		t.Fatalf("the probe does not answer: %+v, %v\n%s", info, err, c.stderr.String())
	}
}
