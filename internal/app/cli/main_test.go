package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/app/testroot"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// Cross-process tests re-run the test binary with a role in its
// environment. Named waits instead of bare sleeps:
const (
	probablyStillBlocked = testbound.ProbablyStillBlocked
	// quiescent is a pause between polls.
	quiescent = 20 * time.Millisecond
)

const (
	roleEnv = "LOCKWATCH_CLI_TEST_ROLE"
	dirEnv  = "LOCKWATCH_CLI_TEST_DIR"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Getenv(dirEnv)))
	}
	// Every run the tests make, directly or through a program that makes
	// its own (the demo, 'lockwatch run'), goes under a temporary root,
	// removed at the end with the binaries built: nothing is left in /dev/shm.
	code := testroot.Run(m, "lockwatch-cli-root-")
	if code == 0 {
		// The coarse clock's ticker (record.Coarse) is the process's, not a
		// leak: it stops itself a second after its last use.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/lockwatch/lockwatch/internal/rt/record.tickCoarse")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runRole is a child process's body.
func runRole(role, dir string) int {
	switch role {
	case "ab", "ba":
		// Takes its first lock, says so, waits for a line on stdin, then
		// takes its second: two such processes deadlock.
		// "ab" runs a probe (LOCKWATCH_DIR is set for it), "ba" none.
		var r *lockreg.Registry
		if role == "ab" {
			a, err := probe.Start(probe.Options{Role: role})
			if err != nil {
				fmt.Println("error", err)
				return 1
			}
			r = a.Registry()
		} else {
			var err error
			if r, err = lockreg.Open(dir, lockreg.Options{Role: role}); err != nil {
				fmt.Println("error", err)
				return 1
			}
		}
		first, second := "lock.a", "lock.b"
		if role == "ba" {
			first, second = second, first
		}
		m1, err1 := r.Mutex(first)
		m2, err2 := r.Mutex(second)
		if err1 != nil || err2 != nil {
			fmt.Println("error", err1, err2)
			return 1
		}
		if err := m1.Lock(context.Background()); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("locked")
		bufio.NewReader(os.Stdin).ReadString('\n')
		if err := m2.Lock(context.Background()); err != nil {
			fmt.Println("error", err)
			return 1
		}
		return 0
	case "load":
		return loadRole(dir)
	case "pause":
		return pauseRole(dir) // pause_test.go
	case "printer":
		return printerRole()
	case "joiner":
		// Joins the run, says so, and waits for its stdin to close.
		a, err := probe.Start(probe.Options{Role: role})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		defer a.Close()
		fmt.Println("joined")
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "measure":
		return measureRole()
	case "dropin", "hold-x", "chain", "self", "rwtrap", "cycle", "stuck-holder", "many":
		return dropinRoles(role, dir)
	case "forger":
		return forgerRole(dir)
	case "leader", "standby":
		return leaderRole(role) // killpolicy_test.go
	case "escaper":
		return escaperRole(dir)
	case "hostile-probe":
		return hostileProbeRole(dir) // amplify_test.go
	case "hostile-idle", "hostile-join":
		return hostileRunRoles(role) // escape_test.go
	case "order":
		return orderRole(dir) // order_test.go
	case "droporder":
		return dropOrderRole(dir) // droporder_test.go
	case "droporder-load":
		return dropOrderLoadRole(dir)
	case "filelock", "filelock-child":
		return fileLockRole(role) // filelocks_test.go
	case "life":
		return lifeRole(dir) // rundirbound_test.go
	case "dropinlife":
		return dropinLifeRole() // dropinsweep_test.go
	case "downed":
		return downedRole() // attachdown_test.go
	}
	fmt.Println("unknown role", role)
	return 2
}

// awake keeps a child that blocks every goroutine of its own for good alive,
// as a stuck server is: a thread of it waits for a signal (SIGHUP), which Go's
// runtime counts as able to wake it. Without one, a child built without cgo
// (a test binary without -race) would be ended by the runtime ("all
// goroutines are asleep - deadlock!") once its probe, started outside
// lockwatch run, stood down so that the runtime may: before the test reads it.
func awake() { signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP) }

// child starts the test binary in role, in the run dir, with no
// LOCKWATCH_DIR (so no probe starts by itself). It returns the process, a
// pipe to its stdin and a line reader of its stdout.
func child(t testing.TB, role, dir string, extra ...string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), roleEnv+"="+role, dirEnv+"="+dir)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, in, bufio.NewReader(out)
}

// cleanEnv is the environment without LOCKWATCH_DIR.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, probe.EnvDir+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// expectLine reads a line and fails unless it is want.
func expectLine(t testing.TB, r *bufio.Reader, want string) {
	t.Helper()
	type said struct {
		line string
		err  error
	}
	c := make(chan said, 1)
	go func() { // ends when the child says a line, or ends (child's cleanup)
		line, err := r.ReadString('\n')
		c <- said{line, err}
	}()
	select {
	case s := <-c:
		if strings.TrimSpace(s.line) != want {
			t.Fatalf("child said %q (%v); want %q", s.line, s.err, want)
		}
	case <-time.After(3 * probablyStillBlocked):
		// A child that never says its line fails its test here, rather
		// than hanging the whole run until go test's -timeout.
		t.Fatalf("child said nothing in %v; want %q", 3*probablyStillBlocked, want)
	}
}

// lockwatch runs Main in this process, as the command would.
func lockwatch(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e lockedBuffer
	code = Main(context.Background(), args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// lockedBuffer is a bytes.Buffer that lockwatch run and the program it
// runs (through os/exec's copying goroutine) may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runDir makes a private run directory for a test.
func runDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// binaries builds lockwatch, the demo and the example program of README.md
// (examples/stuck) once per test binary, static as the Makefile builds them.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := testroot.TempDir("lockwatch-cli-test-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	if os.Getenv("GOCOVERDIR") != "" {
		// make cover: lockwatch's and the demo's processes count too.
		args = append(args, "-cover", "-coverpkg=github.com/lockwatch/lockwatch/...")
	}
	cmd := exec.Command("go", append(args, "github.com/lockwatch/lockwatch/cmd/lockwatch", "github.com/lockwatch/lockwatch/cmd/demo",
		"github.com/lockwatch/lockwatch/examples/stuck")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func bins(t testing.TB) (lockwatchBin, demoBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "lockwatch"), filepath.Join(dir, "demo")
}
