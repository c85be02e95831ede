package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/probe"
)

// downedRole starts a probe in a run of its own (probe.Start, outside
// lockwatch run), says "ready SOCKET", and waits for a line on stdin; then
// it allocates (a live program runs garbage collections) until killed.
func downedRole() int {
	a, err := probe.Start(probe.Options{Role: "downed"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", a.SocketPath())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 0
	}
	var keep [][]byte
	for {
		keep = append(keep, make([]byte, 64<<10))
		if len(keep) > 16 {
			keep = keep[1:]
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAttachStoodDown: while the probe of a live program stands down (as
// it does when its looks find every goroutine blocked), attach PID and
// stacks PID still report the program, read from its memory, and say so in
// one line, as attach RUN does of it; the
// probe serves again after the program's next garbage collection, and
// attach reads it through its socket again.
func TestAttachStoodDown(t *testing.T) {
	cmd, in, out := child(t, "downed", "")
	line, err := out.ReadString('\n')
	sock, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		t.Fatalf("child said %q (%v); want ready SOCKET", line, err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(sock)) })
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := (&probeclient.Client{Path: sock}).StandDown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFile(t, sock, false)

	const note = "probe stands down"
	code, stdout, stderr := lockwatch(t, "attach", pid)
	if code != 0 || strings.Count(stdout, note) != 1 || stderr != "" || strings.Contains(stdout, "connect:") {
		t.Fatalf("attach while the probe stands down: exit %d; want 0 and one line that says %q\n%s%s", code, note, stdout, stderr)
	}
	code, stdout, stderr = lockwatch(t, "attach", filepath.Dir(sock))
	if code != 0 || strings.Count(stdout, note) != 1 || strings.Contains(stdout, "connect:") {
		t.Fatalf("attach RUN while the probe stands down: exit %d; want 0 and one line that says %q\n%s%s", code, note, stdout, stderr)
	}
	code, stdout, stderr = lockwatch(t, "stacks", pid)
	if code != 0 || strings.Count(stdout, note) != 1 || !strings.Contains(stdout, "downedRole") {
		t.Fatalf("stacks while the probe stands down: exit %d; want 0, the child's stacks and one line that says %q\n%s%s", code, note, stdout, stderr)
	}

	if _, err := fmt.Fprintln(in, "allocate"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, sock, true)
	code, stdout, stderr = lockwatch(t, "attach", pid)
	if code != 0 || strings.Contains(stdout, note) || !strings.Contains(stdout, "downed") {
		t.Fatalf("attach once the probe serves again: exit %d; want 0, its run and no %q\n%s%s", code, note, stdout, stderr)
	}
}

// waitFile waits until path exists (or, with !exists, is gone), at most
// probablyStillBlocked.
func waitFile(t *testing.T, path string, exists bool) {
	t.Helper()
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		_, err := os.Stat(path)
		if (err == nil) == exists && (exists || errors.Is(err, fs.ErrNotExist)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: %v; want it to exist: %v", probablyStillBlocked, path, err, exists)
		}
	}
}
