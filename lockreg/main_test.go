package lockreg

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
)

// Cross-process tests re-run the test binary with a role in its environment.
// Named waits instead of bare sleeps:
const (
	probablyStillBlocked = testbound.ProbablyStillBlocked
	// quiescent is a pause after which a wait that had to start has started.
	quiescent = 50 * time.Millisecond
	// progressBound bounds a wait for a child to print what it must print:
	// it only stops a broken test from hanging, so it is generous (a loaded
	// machine runs a race-instrumented child slowly).
	progressBound = 2 * time.Minute
)

const roleEnv = "LOCKREG_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Getenv("LOCKREG_TEST_DIR"), strings.Fields(os.Getenv("LOCKREG_TEST_ARGS"))))
	}
	code := m.Run()
	if staticBin != "" {
		os.RemoveAll(filepath.Dir(staticBin))
	}
	os.Exit(code)
}

// say prints one line to stdout for the parent to read.
func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// runRole is a child process's body.
func runRole(role, dir string, args []string) int {
	opts := Options{StuckAfter: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		NoRecord: os.Getenv("LOCKREG_TEST_NORECORD") == "1"}
	if len(args) > 0 && args[0] == "recover" {
		opts.Policy = Recover
	}
	opts.OnStuck = func(e StuckEvent) {
		b, _ := json.Marshal(map[string]any{"lock": e.Lock, "holder": e.Holder.PID, "alive": e.HolderAlive(),
			"status": e.HolderStatus.String(), "ownerDied": e.OwnerDied, "calls": e.Calls})
		say("stuck %s", b)
	}
	if point := os.Getenv("LOCKREG_TEST_HOOK"); point != "" {
		// Park here until the parent SIGKILLs this process.
		testHook = func(at string) {
			if at == point {
				say("at %s", at)
				for {
					time.Sleep(time.Hour)
				}
			}
		}
	}
	r, err := Open(dir, opts)
	if err != nil {
		say("error %v", err)
		return 1
	}
	ctx := context.Background()
	m, err := r.Mutex("test.lock")
	if err != nil {
		say("error %v", err)
		return 1
	}
	switch role {
	case "order", "orderload":
		return orderRole(r, role, args) // order_test.go
	case "tokens", "tokenhold", "tokenwait":
		return tokenRole(r, m, role, args) // fence_test.go
	case "open":
		st, err := os.Stat(filepath.Join(dir, arena.ArenaFile))
		if err != nil {
			say("error %v", err)
			return 1
		}
		say("inode %d", st.Sys().(*syscall.Stat_t).Ino)
		return 0
	case "counter":
		n, _ := strconv.Atoi(args[1])
		path := filepath.Join(dir, "counter")
		for i := 0; i < n; i++ {
			if err := m.Lock(ctx); err != nil {
				say("error %v", err)
				return 1
			}
			b, _ := os.ReadFile(path)
			c, _ := strconv.Atoi(string(b))
			if err := os.WriteFile(path, []byte(strconv.Itoa(c+1)), 0o600); err != nil {
				say("error %v", err)
				return 1
			}
			if err := m.Unlock(); err != nil {
				say("error %v", err)
				return 1
			}
		}
		say("done")
		return 0
	case "names", "parkcreate":
		return runNamesRole(r, role, args)
	case "allocname":
		say("error the names-locked hook did not park %s", role)
		return 1
	case "cancelwait":
		// Waits until a line on stdin cancels the wait.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
			cancel()
		}()
		say("waiting")
		if err := m.Lock(cctx); err != context.Canceled {
			say("error Lock: got %v; want context.Canceled", err)
			return 1
		}
		say("cancelled")
		return 0
	case "doubleunlock":
		n, _ := strconv.Atoi(args[1])
		say("started")
		return doubleUnlocks(m, n)
	case "ownercheck":
		n, _ := strconv.Atoi(args[1])
		say("started")
		return ownerChecks(r, m, n)
	case "churn":
		say("self %d %d", r.Self().PID, r.Self().Start)
		if args[1] == "live" {
			say("live")
			_, _ = io.Copy(io.Discard, os.Stdin)
			return 0
		}
		if err := m.Lock(ctx); err != nil {
			say("error %v", err)
			return 1
		}
		if err := m.Unlock(); err != nil {
			say("error %v", err)
			return 1
		}
		switch args[1] {
		case "close":
			if err := r.Close(); err != nil {
				say("error %v", err)
				return 1
			}
			say("closed")
			return 0
		case "exit":
			say("exiting")
			return 0
		case "kill":
			hm, err := r.MutexWith("held", MutexOptions{Policy: Recover})
			if err == nil {
				if err = hm.Lock(ctx); err == ErrOwnerDead {
					err = nil // the previous worker was killed holding it
				}
			}
			if err != nil {
				say("error %v", err)
				return 1
			}
			say("held")
			_, _ = io.Copy(io.Discard, os.Stdin)
			return 0
		}
	case "openclose":
		n, _ := strconv.Atoi(args[1])
		say("linked %s", openCloseLinked(dir, n))
		return 0
	case "torncheck":
		torn, seen1, seen2 := tornReads(m.s, 3_000_000)
		say("torn %d seen %d %d", torn, seen1, seen2)
		return 0
	case "spin":
		say("spinning")
		for {
			if err := m.Lock(ctx); err != nil {
				say("error %v", err)
				return 1
			}
			_ = m.Unlock()
		}
	case "selflock": // takes the lock, then asks for it again: deadlocked on itself
		if err := m.Lock(ctx); err != nil {
			say("error %v", err)
			return 1
		}
		say("locked")
		err := m.Lock(ctx)
		say("error second Lock returned %v", err)
		return 1
	case "hold":
		if err := m.Lock(ctx); err != nil {
			say("error %v", err)
			return 1
		}
		say("held")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent kills us
		return 0
	case "wait":
		say("waiting")
		err := m.Lock(ctx)
		switch err {
		case nil:
			say("acquired")
		case ErrOwnerDead:
			say("ownerdead")
		default:
			say("error %v", err)
			return 1
		}
		if err := m.Unlock(); err != nil {
			say("error %v", err)
			return 1
		}
		// The lock works afterwards.
		if err := m.Lock(ctx); err != nil {
			say("error relock %v", err)
			return 1
		}
		_ = m.Unlock()
		say("relocked")
		return 0
	}
	say("error unknown role %q", role)
	return 2
}

// child is a running role process with a line reader on its stdout.
type child struct {
	t     testing.TB
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
}

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
)

// testBinary returns a test binary whose processes register the kernel's robust
// list (robust) or that fall back to liveness polling (!robust). A race or
// cgo build has glibc's list on its main thread, so for robust=true in such a
// build, a static, race-free copy of this test binary is built once.
func testBinary(t testing.TB, robustWanted bool) (bin string, env []string) {
	if !robustWanted {
		return os.Args[0], []string{"LOCKREG_ROBUST=0"}
	}
	if ok, _ := RobustList(); ok {
		return os.Args[0], nil
	}
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lockreg-static")
		if err != nil {
			staticErr = err
			return
		}
		staticBin = filepath.Join(dir, "lockreg.test")
		cmd := exec.Command("go", "test", "-c", "-o", staticBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("building a static test binary: %v\n%s", err, out)
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return staticBin, nil
}

// startRoleB starts the spinning partner of a contention benchmark: the
// static test binary, so that both sides run without the race detector.
func startRoleB(t testing.TB, dir string, record bool) *child {
	env := "LOCKREG_TEST_NORECORD=0"
	if !record {
		env = "LOCKREG_TEST_NORECORD=1"
	}
	return startRoleEnv(t, true, "spin", dir, []string{env})
}

func startRole(t testing.TB, robust bool, role, dir string, args ...string) *child {
	t.Helper()
	return startRoleEnv(t, robust, role, dir, nil, args...)
}

func startRoleEnv(t testing.TB, robust bool, role, dir string, extra []string, args ...string) *child {
	bin, env := testBinary(t, robust)
	env = append(env, extra...)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), roleEnv+"="+role, "LOCKREG_TEST_DIR="+dir,
		"LOCKREG_TEST_ARGS="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	// A test binary that dies (a timeout's panic) takes its children along:
	// a spinning child left behind would load the machine for good.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, lines: make(chan string, 100), stdin: in}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// expect waits for a line with the prefix and returns it.
func (c *child) expect(prefix string) string {
	c.t.Helper()
	timeout := time.After(progressBound)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("pid %d exited before printing %q", c.cmd.Process.Pid, prefix)
			}
			if strings.HasPrefix(l, "error") {
				c.t.Fatalf("pid %d: %s", c.cmd.Process.Pid, l)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			c.t.Fatalf("pid %d did not print %q within %v", c.cmd.Process.Pid, prefix, progressBound)
		}
	}
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// runDir returns a fresh run directory path (not yet created).
func runDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "run")
}
