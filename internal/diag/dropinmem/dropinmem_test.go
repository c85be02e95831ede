package dropinmem_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/dropinmem"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// holder starts testdata/holder (only its sync import changed: no probe),
// with extra environment, and returns it with its goroutine id and the line
// of its Lock once it holds the mutex.
func holder(t *testing.T, env ...string) (*exec.Cmd, int64, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holder")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/holder").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	var g int64
	var line int
	if _, err := fmt.Fscanf(bufio.NewReader(out), "ready %d %d\n", &g, &line); err != nil {
		t.Fatalf("holder: %v", err)
	}
	return cmd, g, line
}

// check finds in v the mutex held by goroutine g at line of main.main,
// with a writer waiting from main.main.func1.
func check(t *testing.T, v *probeclient.MutexView, g int64, line int) {
	t.Helper()
	for _, m := range v.Mutexes {
		if m.Holder == nil || m.Holder.Goroutine != g {
			continue
		}
		if m.Holder.Site.Func != "main.main" || m.Holder.Site.Line != line {
			t.Errorf("holder site %+v; want main.main line %d", m.Holder.Site, line)
		}
		if m.Kind != "mutex" || !strings.HasSuffix(m.Name, fmt.Sprintf("main.go:%d", line)) {
			t.Errorf("kind %q name %q; want a mutex named by main.go:%d", m.Kind, m.Name, line)
		}
		if len(m.Waiters) != 1 || !m.Waiters[0].Write || len(m.Waiters[0].Stack) == 0 ||
			!slices.ContainsFunc(m.Waiters[0].Stack, func(f stackdump.Frame) bool { return f.Func == "main.main.func1" }) {
			t.Errorf("waiters %+v; want one writer waiting in main.main.func1", m.Waiters)
		}
		if w := m.Waiters; len(w) == 1 && (w[0].Since.After(time.Now()) || time.Since(w[0].Since) > time.Minute) {
			t.Errorf("waiter since %v; want within the last minute", w[0].Since)
		}
		return
	}
	t.Fatalf("no mutex held by goroutine %d in %+v", g, v)
}

// TestViewFromOutside: a process that only changed its import line, in
// the drop-in's records mode, is read from outside, through its memfd:
// holder, site, waiter and stack.
func TestViewFromOutside(t *testing.T) {
	cmd, g, line := holder(t, "LOCKWATCH_DIR=", "LOCKWATCH_DROPIN=records")
	v, err := dropinmem.View(procid.ID{PID: cmd.Process.Pid}, "")
	if err != nil {
		t.Fatal(err)
	}
	check(t, v, g, line)
}

// TestViewInRun: under lockwatch run (LOCKWATCH_DIR) the arena is a file
// of the run directory.
func TestViewInRun(t *testing.T) {
	dir := t.TempDir()
	cmd, g, line := holder(t, "LOCKWATCH_DIR="+dir)
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("dropin-%d.arena", cmd.Process.Pid))); err != nil {
		t.Fatal(err)
	}
	v, err := dropinmem.View(procid.ID{PID: cmd.Process.Pid}, dir)
	if err != nil {
		t.Fatal(err)
	}
	check(t, v, g, line)
}

// TestNoArenaInOwnerMode: in the drop-in's default mode (the owner mode)
// a process makes no arena, though it holds and awaits drop-in mutexes:
// their holders are in their owner words, read from its memory.
func TestNoArenaInOwnerMode(t *testing.T) {
	cmd, _, _ := holder(t, "LOCKWATCH_DIR=", "LOCKWATCH_DROPIN=")
	if _, err := dropinmem.View(procid.ID{PID: cmd.Process.Pid}, ""); !errors.Is(err, inproc.ErrNoArena) {
		t.Errorf("err %v; want %v", err, inproc.ErrNoArena)
	}
}

// TestNoArena: a process without the drop-in has none, and says so.
func TestNoArena(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if _, err := dropinmem.View(procid.ID{PID: cmd.Process.Pid}, ""); err == nil || !strings.Contains(err.Error(), "does not use") {
		t.Errorf("err %v; want no drop-in records", err)
	}
}
