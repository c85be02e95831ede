package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/probe"
)

// Named waits of the end-to-end tests.
const (
	// runDeadline bounds a run that should end, or a hang that should show:
	// generous, as the race detector and a busy machine slow everything.
	runDeadline = 60 * time.Second
	// pollEvery is how often a test looks at the registry or /proc.
	pollEvery = 10 * time.Millisecond
)

// newRunDir returns a fresh run directory for the demo to join.
func newRunDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// demoCmd returns the demo with args, in the run dir, in a process group of
// its own so that the test can kill the whole run.
func demoCmd(dir string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(demoBin, args...)
	cmd.Env = append(os.Environ(), probe.EnvDir+"="+dir, probe.EnvRole+"=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// exitCode returns the exit status of a finished command's Run or Wait error.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("run demo: %v", err)
	}
	return ee.ExitCode()
}

// lastLine returns the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// survivors returns the processes that run with dir in their environment.
func survivors(dir string) []int {
	needle := []byte("\x00" + probe.EnvDir + "=" + dir + "\x00")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or a zombie
		}
		if bytes.Contains(append([]byte{0}, env...), needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoneLeft fails the test unless, within runDeadline, no process of the
// run is left: none with the run in its environment, and every process of
// the registry's table dead.
func checkNoneLeft(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(runDeadline)
	for {
		left := survivors(dir)
		snap, err := arena.ReadSnapshot(dir)
		if err != nil {
			t.Fatalf("read the run's registry: %v", err)
		}
		for _, p := range snap.Processes {
			if st, _ := proc.Check(p.Identity()); st == proc.Alive {
				left = append(left, p.PID)
			}
		}
		if len(left) == 0 {
			if len(snap.Processes) == 0 {
				t.Error("the registry recorded no process")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the run still alive after %v: %v", runDeadline, left)
		}
		time.Sleep(pollEvery)
	}
}

func TestFixDeliversAll(t *testing.T) {
	dir := newRunDir(t)
	cmd, stdout, stderr := demoCmd(dir, "--fix", "--items", "3000", "--workers", "3")
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Errorf("exit status %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got, want := lastLine(stdout.String()), "produced 3000 delivered 3000"; got != want {
		t.Errorf("last line %q; want %q", got, want)
	}
	checkNoneLeft(t, dir)
	snap, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, p := range snap.Processes {
		if p.State != arena.ProcExited {
			t.Errorf("process %d: state %s; want %s", p.PID, p.State, arena.ProcExited)
		}
		if p.Info != nil {
			roles[p.Info.Role]++
		}
	}
	if want := map[string]int{"main": 1, "worker": 3, "writer": 1}; fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Errorf("roles in the registry: %v; want %v", roles, want)
	}
}

// waitDeadHolder polls the registry until the lock "queue.wlock" is held by
// a dead process, and returns that holder's pid.
func waitDeadHolder(t *testing.T, dir string, exited <-chan struct{}) int {
	t.Helper()
	deadline := time.Now().Add(runDeadline)
	for {
		snap, err := arena.ReadSnapshot(dir)
		if err == nil {
			for _, l := range snap.Locks {
				if l.Name != LockName || l.Holder == nil {
					continue
				}
				st, _ := proc.Check(l.Holder.Identity())
				if l.OwnerDied || st == proc.Gone || st == proc.Zombie || st == proc.Reused {
					return l.Holder.PID
				}
			}
		}
		select {
		case <-exited:
			t.Fatal("demo --hang exited; want it to hang")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s has no dead holder (last snapshot error: %v)", runDeadline, LockName, err)
		}
		time.Sleep(pollEvery)
	}
}

// startHang starts demo --hang and waits until the registry shows a worker
// dead holding the write lock.
func startHang(t *testing.T, dir string) (cmd *exec.Cmd, waited <-chan error) {
	t.Helper()
	cmd, _, stderr := demoCmd(dir, "--hang", "--items", "5000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		errc <- err
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("demo stderr:\n%s", stderr)
		}
	})
	pid := waitDeadHolder(t, dir, exited)
	if pid == cmd.Process.Pid {
		t.Errorf("the dead holder is main (%d); want a worker", pid)
	}
	return cmd, errc
}

func TestHangHangs(t *testing.T) {
	dir := newRunDir(t)
	cmd, waited := startHang(t, dir)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-waited
	checkNoneLeft(t, dir)
}

// TestInterruptKillsChildren: SIGTERM to main alone, as an impatient user or
// a supervisor sends it, ends the whole run.
func TestInterruptKillsChildren(t *testing.T) {
	dir := newRunDir(t)
	cmd, waited := startHang(t, dir)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if code := exitCode(t, err); code != exitInterrupted {
			t.Errorf("exit status %d; want %d", code, exitInterrupted)
		}
	case <-time.After(runDeadline):
		t.Fatalf("demo still runs %v after SIGTERM", runDeadline)
	}
	checkNoneLeft(t, dir)
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no workers", []string{"--workers", "0"}},
		{"negative items", []string{"--items", "-1"}},
		{"negative payload", []string{"--payload", "-1"}},
		{"unknown flag", []string{"--frobnicate"}},
		{"argument", []string{"now"}},
		{"fix and hang", []string{"--fix", "--hang"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newRunDir(t)
			cmd, _, stderr := demoCmd(dir, tt.args...)
			if code := exitCode(t, cmd.Run()); code != exitUsage {
				t.Errorf("exit status %d; want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr.String(), "usage: demo") {
				t.Errorf("stderr has no usage:\n%s", stderr)
			}
			if left := survivors(dir); len(left) > 0 {
				t.Errorf("processes left: %v", left)
			}
		})
	}
}
