package probe

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
)

// TestStandDownLetsGoEndADeadlock: asked to stand down (what lockwatch run
// asks of a process it finds blocked), the probe of a program whose
// goroutines all block leaves no socket, goroutine, timer or signal handler
// behind, and the runtime ends the program with its own message and status
// 2. The probe may have stood down by itself first (deadlock_test.go): the
// request then finds no socket, and the program ends all the same.
func TestStandDownLetsGoEndADeadlock(t *testing.T) {
	bin := buildProgram(t, "blocked", false)
	c := startProgram(t, bin, "chan")
	sock := c.ready(t)
	err := (&probeclient.Client{Path: sock}).StandDown(context.Background())
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, probeclient.ErrNoAnswer) {
		t.Fatalf("standing the probe down: %v", err)
	}
	code := c.exit(t)
	if stderr := c.stderr.String(); code != 2 || !strings.Contains(stderr, "all goroutines are asleep - deadlock!") {
		t.Fatalf("the program ended with status %d; want 2 and the runtime's deadlock:\n%s", code, stderr)
	}
}

// TestStandDownReturns: a stood-down agent has no socket and none of its
// goroutines; it keeps its registry (its process stays a member of the
// run); after garbage collections (one it forces, one more) it serves
// again, and Close ends it as usual.
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
	down := filepath.Join(a.Dir(), probewire.DownFile(a.base))
	if _, err := os.Stat(down); err != nil {
		t.Errorf("a stood-down agent keeps no mark: %v", err)
	}
	// It forced a collection as it stood down, which counts: one more
	// brings it back.
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		a.mu.Lock()
		rounds := a.rounds
		a.mu.Unlock()
		if rounds == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the stood-down agent has seen %d collections; want the one it forced", probablyStillBlocked, rounds)
		}
	}
	runtime.GC()
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		if _, err := cl.Info(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v and a garbage collection the agent does not serve again: %s", probablyStillBlocked, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "the probe serves again") {
		t.Errorf("no line says the probe serves again: %q", stderr.String())
	}
	if _, err := os.Stat(down); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the agent serves again, and keeps its stand-down mark: %v", err)
	}
}

// agentGoroutines reports whether a goroutine of an agent's serving runs.
func agentGoroutines() bool {
	buf := make([]byte, 1<<20)
	s := string(buf[:runtime.Stack(buf, true)])
	return strings.Contains(s, "probe.(*Agent).loop(") || strings.Contains(s, "probe.(*Agent).watchMutexes(") || strings.Contains(s, "probe.(*Agent).keepOrders(")
}

// TestBlindProbeSaysSo: a probe that cannot read what its looks need (a
// process that is not dumpable, whose /proc files another user cannot
// open; a kernel without schedstat files) says so once, with what it costs
// (Go's runtime will not end the program for a deadlock while it serves),
// and serves on; when it serves again after standing down, it says
// nothing more.
func TestBlindProbeSaysSo(t *testing.T) {
	blind := func() error { return errors.New("/proc/self/task/7/syscall cannot be read: permission denied") }
	readable.Store(&blind)
	t.Cleanup(func() { readable.Store(nil) })
	var stderr syncBuffer
	a := startAgent(t, Options{Stderr: &stderr})
	cl := &probeclient.Client{Path: a.SocketPath()}
	ctx := context.Background()
	if _, err := cl.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.StandDown(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		runtime.GC()
		if _, err := cl.Info(ctx); err == nil && strings.Contains(stderr.String(), "serves again") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the agent does not serve again: %s", probablyStillBlocked, stderr.String())
		}
	}
	const want = "the probe cannot tell when every goroutine is blocked (/proc/self/task/7/syscall cannot be read: permission denied), so while it serves Go's runtime will not end this program for a deadlock; run it under lockwatch run to keep that"
	if n := strings.Count(stderr.String(), want); n != 1 {
		t.Errorf("said %d times; want once: %q\n%s", n, want, stderr.String())
	}
}
