package gostacks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"

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

// startHelper starts this test binary as a helper and returns its pid.
func startHelper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOSTACKS_TEST_HELPER=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// Two processes of one executable are read with one read of its binary:
// the second with the first's, which stays open until Close (a binary
// closed with the first process would fail the second's read).
func TestSharedBinary(t *testing.T) {
	a, b := startHelper(t), startHelper(t)
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
	if err := g.owners[0].Binary.Close(); err != nil {
		t.Errorf("the binary kept was closed with a process it was read for: %v", err)
	}
	g.Close()
	if len(g.owners) != 0 || len(g.bins) != 0 {
		t.Errorf("Close left %d processes and %d binaries", len(g.owners), len(g.bins))
	}
}
