package gostacks

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/testchild"
	"github.com/lockwatch/lockwatch/report"
)

// A helper process: says it is ready, then reads its stdin until the test
// closes it.
func init() {
	if os.Getenv("GOSTACKS_TEST_HELPER") == "1" {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
}

// startHelper starts exe (this test binary or a copy) as a helper and
// returns its pid.
func startHelper(t *testing.T, exe string) int {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOSTACKS_TEST_HELPER=1")
	testchild.StartReady(t, cmd)
	return cmd.Process.Pid
}

// Two processes of one executable are read with one read of its binary:
// the second with the first's, which stays open until Close (a binary
// closed with the first process would fail the second's read).
func TestSharedBinary(t *testing.T) {
	a, b := startHelper(t, os.Args[0]), startHelper(t, os.Args[0])
	g := New()
	r := &report.Report{}
	for _, pid := range []int{a, b} {
		g.Add(context.Background(), r, Party{PID: pid, Lock: "/tmp/x", Role: "holder"}, Blocked)
		if g.imgs[pid] == nil {
			t.Fatalf("pid %d's goroutines not read: %v", pid, g.failed[pid])
		}
	}
	if len(g.bins) != 1 || len(g.owners) != 1 {
		t.Errorf("%d binaries read for two processes of one executable (%d kept); want 1", len(g.bins), len(g.owners))
	}
	if g.owners[0].PID != a {
		t.Errorf("the binary kept is pid %d's; want the first process's, %d", g.owners[0].PID, a)
	}
	// Still open after both reads: closed, it would lose the second
	// process's inlined frames (the binary's file is read for them).
	kept := g.owners[0].Binary
	if err := kept.Close(); err != nil {
		t.Errorf("the binary kept was closed with a process it was read for: %v", err)
	}
	g.owners[0].Binary = nil // closed here

	// A process of another executable (a copy: another inode) has its own
	// binary read, and the one kept before is let go: one at a time.
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "helper")
	if err := os.WriteFile(cp, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	c := startHelper(t, cp)
	g.owners[0] = nil
	g.owners = g.owners[:0]
	g.Add(context.Background(), r, Party{PID: c, Lock: "/tmp/x", Role: "holder"}, Blocked)
	if g.imgs[c] == nil {
		t.Fatalf("pid %d's goroutines not read: %v", c, g.failed[c])
	}
	if len(g.bins) != 1 || len(g.owners) != 1 || g.owners[0].PID != c || g.bins[mustExe(t, c)] == kept {
		t.Errorf("after a process of another executable: %d binaries kept, owners %d; want the new one alone", len(g.bins), len(g.owners))
	}
	g.Close()
	if len(g.owners) != 0 || len(g.bins) != 0 {
		t.Errorf("Close left %d processes and %d binaries", len(g.owners), len(g.bins))
	}
}

func mustExe(t *testing.T, pid int) exeID {
	id, ok := exeOf(pid)
	if !ok {
		t.Fatalf("pid %d: no executable", pid)
	}
	return id
}
