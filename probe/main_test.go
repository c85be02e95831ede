package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/lockreg"
	"go.uber.org/goleak"
)

// Named waits instead of bare sleeps.
const (
	probablyStillBlocked = testbound.ProbablyStillBlocked
	// quiescent is a pause after which a wait that had to start has started.
	quiescent = 50 * time.Millisecond
)

// The test binary re-runs itself as a child process with a role:
const (
	testRoleEnv = "PROBE_TEST_ROLE"
	testDirEnv  = "PROBE_TEST_DIR" // the run directory, for roles that call Start themselves
)

func TestMain(m *testing.M) {
	if role := os.Getenv(testRoleEnv); role != "" {
		os.Exit(childMain(role, os.Getenv(testDirEnv)))
	}
	// Run under lockwatch, this binary started a probe in init: the tests
	// want none.
	if a := Running(); a != nil {
		_ = a.Close()
	}
	// The coarse clock's ticker of the drop-in mutexes stops by itself a
	// second after their last use.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/lockwatch/lockwatch/internal/rt/record.tickCoarse"),
		goleak.Cleanup(func(int) { removePrograms() }))
}

// report prints one line on stdout for the parent test.
func report(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// childMain is a child process's body. It reports "error ..." and returns
// non-zero when something fails.
func childMain(role, dir string) int {
	ctx := context.Background()
	fail := func(err error) int { report("error %v", err); return 1 }
	var a *Agent
	switch role {
	case "serve":
		// Started by init, from LOCKWATCH_DIR.
		if a = Running(); a == nil {
			return fail(fmt.Errorf("no probe running with %s=%q", EnvDir, os.Getenv(EnvDir)))
		}
	case "hold", "wait":
		var err error
		a, err = Start(Options{Dir: dir, Registry: lockreg.Options{StuckAfter: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond}})
		if err != nil {
			return fail(err)
		}
	case "rwtrap":
		return rwtrapRole(dir)

	default:
		return fail(fmt.Errorf("unknown role %q", role))
	}
	name := map[string]string{"serve": "test.lock", "hold": "dead.lock", "wait": "dead.lock"}[role]
	m, err := a.Registry().Mutex(name)
	if err != nil {
		return fail(err)
	}
	switch role {
	case "serve":
		// Hold the lock, and have a goroutine wait for it.
		if err := m.Lock(ctx); err != nil {
			return fail(err)
		}
		go func() { _ = m.Lock(ctx) }()
		report("ready")
	case "hold":
		if err := m.Lock(ctx); err != nil {
			return fail(err)
		}
		report("held")
	case "wait":
		report("waiting")
		if err := m.Lock(ctx); err != nil { // blocks: the holder stays dead
			return fail(err)
		}
		report("error acquired a lock whose holder died")
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent kills us or closes stdin
	return 0
}

// A child is a role process of the test binary, with its output read line
// by line.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.Closer
	stdout chan string
	stderr chan string
	// graceful: the role ends when its stdin closes, and the cleanup ends
	// it so, so that its coverage counters are written (make cover); a
	// SIGKILLed process writes none.
	graceful bool
}

// startChild runs the test binary with role and the extra environment.
func startChild(t *testing.T, role string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvDir+"=") && !strings.HasPrefix(kv, EnvRole+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append(env, testRoleEnv+"="+role)...)
	c := &child{t: t, cmd: cmd, stdout: make(chan string, 100), stderr: make(chan string, 100), graceful: role == "serve" || role == "hold"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // kept open: the child waits on it
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	lines := func(r io.Reader, ch chan<- string) {
		defer func() { done <- struct{}{} }()
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case ch <- sc.Text():
			default: // nobody reads this many lines: drop
			}
		}
	}
	go lines(stdout, c.stdout)
	go lines(stderr, c.stderr)
	t.Cleanup(func() {
		if c.graceful {
			c.end()
		} else {
			c.kill()
		}
		<-done
		<-done
	})
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// end closes the child's stdin and reaps it once it has exited; one that
// has not within probablyStillBlocked is SIGKILLed. A child already killed
// and reaped is left as it is.
func (c *child) end() {
	_ = c.stdin.Close()
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		t := time.NewTimer(probablyStillBlocked)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
		}
	}()
	_ = c.cmd.Wait()
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// expect waits for a line of ch that contains all of parts, and returns it.
// A line "error ..." on stdout fails the test.
func (c *child) expect(ch <-chan string, parts ...string) string {
	c.t.Helper()
	timeout := time.NewTimer(probablyStillBlocked)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				c.t.Fatalf("pid %d ended its output before a line with %q", c.pid(), parts)
			}
			if strings.HasPrefix(l, "error") {
				c.t.Fatalf("pid %d: %s", c.pid(), l)
			}
			if containsAll(l, parts) {
				return l
			}
		case <-timeout.C:
			c.t.Fatalf("pid %d wrote no line with %q within %v", c.pid(), parts, probablyStillBlocked)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
