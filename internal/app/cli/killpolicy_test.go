package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/probe"
)

// reportEnv names the file the leader waits for: the report of
// lockwatch run --report.
const reportEnv = "LOCKWATCH_CLI_TEST_REPORT"

// leaderRole: the leader takes "leader.lock", starts a standby that waits
// for it, and holds it until lockwatch has written its report (a
// stuck-holder); then it releases it, the standby takes it and exits, and
// so does the leader, with status 0. A long hold with a waiter is what
// leader election does.
func leaderRole(role string) int {
	a, err := probe.Start(probe.Options{Role: role})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer a.Close()
	m, err := a.Registry().Mutex("leader.lock")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	if err := m.Lock(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	if role == "standby" {
		return boolCode(m.Unlock() != nil)
	}
	standby := exec.Command(os.Args[0], "-test.run=^$")
	standby.Env = append(os.Environ(), roleEnv+"=standby")
	standby.Stdout, standby.Stderr = os.Stdout, os.Stderr
	if err := standby.Start(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	for {
		if _, err := os.Stat(os.Getenv(reportEnv)); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			fmt.Println("error", err)
			return 1
		}
		time.Sleep(10 * time.Millisecond) // poll interval for the report file
	}
	if err := m.Unlock(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return boolCode(standby.Wait() != nil)
}

func boolCode(failed bool) int {
	if failed {
		return 1
	}
	return 0
}

// TestRunKillLeavesStuckHolder: a leader holds its lock while a standby
// waits, past --stuck-after: run reports the stuck holder, and with
// --on-deadlock=kill says it does not kill it (a long hold is not a
// deadlock); the leader then releases, and the program ends by itself,
// with its own status.
func TestRunKillLeavesStuckHolder(t *testing.T) {
	out := t.TempDir() + "/report.txt"
	t.Setenv(roleEnv, "leader")
	t.Setenv(reportEnv, out)
	code, stdout, stderr := lockwatch(t, "run", "--on-deadlock=kill", "--stuck-after=200ms", "--interval=50ms",
		"--report", out, "--", os.Args[0], "-test.run=^$")
	if code != 0 {
		t.Fatalf("exit %d; want 0, the program's own (nothing killed)\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "STUCK-HOLDER") {
		t.Errorf("report %s; want a stuck-holder", b)
	}
	if !strings.Contains(stderr, "not killed: a holder that holds a lock long while others wait (stuck-holder)") {
		t.Errorf("stderr %q; want it to say why nothing was killed", stderr)
	}
}
