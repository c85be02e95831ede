package goproc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
)

// TestExecMidRead: a target that execs another program while it is read
// (after its list of goroutines was read, before its goroutines were)
// gives a clear error, never a report of what the new program's memory
// holds at the old addresses.
func TestExecMidRead(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err == nil {
		sleep, err = filepath.EvalSymlinks(sleep) // as /proc/PID/exe names it
	}
	if err != nil {
		t.Skip("no sleep(1) to exec")
	}
	tg := start(t, build(t, "default"), "-exec-on-usr1", sleep)
	pid := tg.cmd.Process.Pid
	p, err := goproc.Attach(pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	execd := false
	var once sync.Once
	hooked := false
	goproc.SetTestHookRead(func(p int) {
		if p != pid {
			return // another test's target
		}
		once.Do(func() { hooked, execd = true, execNow(tg, pid, sleep) })
	})
	t.Cleanup(func() { goproc.SetTestHookRead(nil) })
	img, err := p.Read(context.Background())
	goproc.SetTestHookRead(nil)
	if !execd {
		t.Fatalf("the target did not exec %s (the hook ran: %v; Read: %v); its stderr:\n%s", sleep, hooked, err, tg.stderr)
	}
	if img != nil || !errors.Is(err, goproc.ErrExited) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("Read of a target that exec'd mid-read: %v, %v; want no image and ErrExited", img, err)
	}
	t.Logf("%v", err)
}

// execNow makes the target exec sleep, and waits until the kernel has
// replaced its program (its exe link names sleep).
func execNow(tg *target, pid int, sleep string) bool {
	tg.cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && l == sleep {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}
