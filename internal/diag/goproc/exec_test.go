package goproc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	goproc.SetTestHookRead(func(int) {
		goproc.SetTestHookRead(nil)
		tg.cmd.Process.Signal(syscall.SIGUSR1)
		// Until the kernel has replaced the program (its exe link).
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && l == sleep {
				execd = true
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Cleanup(func() { goproc.SetTestHookRead(nil) })
	img, err := p.Read(context.Background())
	if !execd {
		t.Fatalf("the target did not exec %s", sleep)
	}
	if img != nil || !errors.Is(err, goproc.ErrExited) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("Read of a target that exec'd mid-read: %v, %v; want no image and ErrExited", img, err)
	}
	t.Logf("%v", err)
}
