// Package testchild starts the helper processes that tests read: a
// process that says "ready" once it is set up and lives until its stdin
// closes.
package testchild

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// readyWithin bounds the wait for "ready": a child that hangs fails the
// test with what it said, rather than hanging it until go test's timeout.
const readyWithin = 60 * time.Second

// StartReady starts cmd with pipes for its stdin and stdout and returns
// once it prints the line "ready"; it fails the test if the child says
// anything else, ends first, or says nothing within a minute. When the
// test ends, the child's stdin is closed, and it is killed and waited for.
func StartReady(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
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
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	ExpectReady(t, cmd, bufio.NewReader(out))
}

// ExpectReady reads a line of r, the stdout of cmd (started), and fails
// the test unless it is "ready", or if it does not come within a minute.
func ExpectReady(t testing.TB, cmd *exec.Cmd, r *bufio.Reader) {
	t.Helper()
	type said struct {
		line string
		err  error
	}
	c := make(chan said, 1)
	go func() {
		line, err := r.ReadString('\n')
		c <- said{line, err}
	}()
	select {
	case s := <-c:
		if strings.TrimSpace(s.line) != "ready" {
			t.Fatalf("%s said %q (%v); want ready", cmd.Path, s.line, s.err)
		}
	case <-time.After(readyWithin):
		t.Fatalf("%s said nothing in %v; want ready", cmd.Path, readyWithin)
	}
}
