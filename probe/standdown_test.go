package probe

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
)

// TestStandDownLetsGoEndADeadlock: a program that started the probe itself,
// outside lockwatch run, and whose goroutines all block, is not ended by
// Go's runtime: its probe serves on (its socket waits in the runtime's
// poller), and answers. Once the probe stands down (what lockwatch run asks
// of it), the probe leaves no socket, goroutine, timer or signal handler
// behind, and the runtime ends the program with its own message and status
// 2. The program is built without cgo: the runtime never ends a cgo program
// so (a -race build is one), with sync either.
func TestStandDownLetsGoEndADeadlock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "blocked")
	build := exec.Command("go", "build", "-o", bin, "./testdata/blocked")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LOCKWATCH_ROOT="+root)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	sock, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		_ = cmd.Wait()
		t.Fatalf("blocked said %q, %v\n%s", line, err, stderr.String())
	}
	cl := &probeclient.Client{Path: sock}
	ctx := context.Background()
	if info, err := cl.Info(ctx); err != nil || info.PID != cmd.Process.Pid {
		t.Fatalf("info of the blocked program: %+v, %v; want its probe serving", info, err)
	}
	if err := cl.StandDown(ctx); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 2 || !strings.Contains(stderr.String(), "all goroutines are asleep - deadlock!") {
		t.Fatalf("the program ended with %v; want exit status 2 and the runtime's deadlock:\n%s", err, stderr.String())
	}
}

// TestStandDownReturns: a stood-down agent has no socket and none of its
// goroutines; it keeps its registry (its process stays a member of the
// run); after two garbage collections it serves again, and Close ends it
// as usual.
func TestStandDownReturns(t *testing.T) {
	var stderr syncBuffer
	a := startAgent(t, Options{Stderr: &stderr})
	cl := &probeclient.Client{Path: a.SocketPath()}
	ctx := context.Background()
	if err := cl.StandDown(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		_, err := os.Stat(a.SocketPath())
		if errors.Is(err, fs.ErrNotExist) && !agentGoroutines() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the stood-down agent has its socket (%v) or goroutines", probablyStillBlocked, err)
		}
	}
	if a.Registry() == nil || Running() != a {
		t.Fatal("the stood-down agent is not the running one")
	}
	if _, err := cl.Info(ctx); err == nil {
		t.Fatal("a stood-down agent answered")
	}
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		runtime.GC()
		if _, err := cl.Info(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v of garbage collections the agent does not serve again: %s", probablyStillBlocked, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "the probe serves again") {
		t.Errorf("no line says the probe serves again: %q", stderr.String())
	}
}

// agentGoroutines reports whether a goroutine of an agent's serving runs.
func agentGoroutines() bool {
	buf := make([]byte, 1<<20)
	s := string(buf[:runtime.Stack(buf, true)])
	return strings.Contains(s, "probe.(*Agent).serve(") || strings.Contains(s, "probe.(*Agent).watchMutexes(") || strings.Contains(s, "probe.(*Agent).keepOrders(")
}
