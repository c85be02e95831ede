package etcdcli_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

// envLeader makes the test binary a leader (or its standby); envReport
// names the report file the leader waits for.
const (
	envLeader = "ETCDCLI_TEST_LEADER"
	envReport = "ETCDCLI_TEST_REPORT"
)

// leaderRole: the leader takes "leader", starts a standby that waits for
// it, and holds it until lockwatch-etcd has written its report; then it
// releases it, and the standby takes it, releases it and exits, and so
// does the leader, with status 0.
func leaderRole(role string) int {
	ctx := context.Background()
	err := func() error {
		cli, err := etcdreg.Dial(ctx, etcdreg.ConnFromEnv())
		if err != nil {
			return err
		}
		defer cli.Close()
		reg, err := etcdreg.Open(ctx, cli, os.Getenv(etcdcli.EnvRun), etcdreg.Options{Role: role})
		if err != nil {
			return err
		}
		defer reg.Close()
		m, err := reg.Mutex("leader")
		if err != nil {
			return err
		}
		if err := m.Lock(ctx); err != nil {
			return err
		}
		if role == "standby" {
			return m.Unlock(ctx)
		}
		standby := exec.Command(os.Args[0])
		standby.Env = append(os.Environ(), envLeader+"=standby")
		standby.Stdout, standby.Stderr = os.Stdout, os.Stderr
		if err := standby.Start(); err != nil {
			return err
		}
		for {
			if _, err := os.Stat(os.Getenv(envReport)); err == nil {
				break
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			time.Sleep(10 * time.Millisecond) // poll interval for the report file
		}
		if err := m.Unlock(ctx); err != nil {
			return err
		}
		return standby.Wait()
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		return 1
	}
	return 0
}

// TestRunLeavesHealthyLeader: a leader holds its lock while a standby
// waits, past --stuck-after: run --on-deadlock=kill reports the stuck
// holder and says it does not kill it; the leader releases, the program
// ends by itself, and run exits with its status, 0.
func TestRunLeavesHealthyLeader(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	reportFile := filepath.Join(t.TempDir(), "report.txt")
	t.Setenv(envLeader, "leader")
	t.Setenv(envReport, reportFile)
	var out, errw strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := etcdcli.Main(ctx, []string{"run", "--on-deadlock=kill", "--stuck-after=300ms", "--interval=100ms",
		"--report", reportFile, "--", os.Args[0]}, &out, &errw)
	if err != nil {
		t.Fatalf("run: %v; want the program's own status 0 (nothing killed)\nstderr:\n%s", err, errw.String())
	}
	b, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "STUCK-HOLDER") {
		t.Errorf("report:\n%s\nwant a stuck-holder", b)
	}
	if !strings.Contains(errw.String(), "not killed") {
		t.Errorf("stderr:\n%s\nwant it to say the leader was not killed", errw.String())
	}
}

// TestRunSaysNotJoined: a PROGRAM that never opens the run: run says so
// within a second, once, and passes its exit status through.
func TestRunSaysNotJoined(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	var out, errw strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := etcdcli.Main(ctx, []string{"run", "--", "sh", "-c", "sleep 2"}, &out, &errw)
	if err != nil {
		t.Fatalf("run: %v; want sh's status 0\nstderr:\n%s", err, errw.String())
	}
	if n := strings.Count(errw.String(), "no process has joined the run after 750ms: sh (pid"); n != 1 {
		t.Errorf("stderr:\n%s\nwant one line saying sh has not joined the run", errw.String())
	}
}
