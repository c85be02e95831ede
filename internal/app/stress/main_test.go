//go:build stress

package stress

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/app/testroot"
)

// Cross-process tests re-run the test binary with a role in its
// environment.
const (
	roleEnv = "LOCKWATCH_STRESS_ROLE"
	dirEnv  = "LOCKWATCH_STRESS_DIR"
	argEnv  = "LOCKWATCH_STRESS_ARG"

	// probablyStillBlocked: the stress children are heavier than most.
	probablyStillBlocked = 3 * testbound.ProbablyStillBlocked
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Getenv(dirEnv), os.Getenv(argEnv)))
	}
	// Runs that lockwatch or a probe would make by themselves go under a
	// temporary root, removed at the end with the binary built: nothing is
	// left in /dev/shm.
	os.Exit(testroot.Run(m, "lockwatch-stress-root-"))
}

func runRole(role, dir, arg string) int {
	switch role {
	case "storm":
		return stormRole(dir, arg)
	}
	fmt.Println("unknown role", role)
	return 2
}

// worker is a child process with its stdin and a line reader of its stdout.
type worker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// start starts the test binary in role and waits for it to say ready.
func start(role, dir, arg string) (*worker, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, dirEnv+"="+dir, argEnv+"="+arg)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if line, err := w.out.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("pid %d said %q (%v); want ready", cmd.Process.Pid, line, err)
	}
	return w, nil
}

var buildLockwatch = sync.OnceValues(func() (string, error) {
	dir, err := testroot.TempDir("lockwatch-stress-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "github.com/lockwatch/lockwatch/cmd/lockwatch")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "lockwatch"), nil
})

// lockwatchBin returns the path of the built lockwatch command.
func lockwatchBin(t testing.TB) string {
	t.Helper()
	p, err := buildLockwatch()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pollPause is the pause between two looks at /proc for a state change.
func pollPause() { time.Sleep(50 * time.Microsecond) }
