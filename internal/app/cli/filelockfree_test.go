package cli

import (
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNotInFileLock: a process that holds or waits for a file lock (flock,
// POSIX, OFD; a holder through an inherited descriptor; a waiter holding
// nothing) is never said to be out of file locks, so attach always reads
// the lock table for it; an idle process that has none is.
func TestNotInFileLock(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("notInFileLock knows linux/amd64's system calls only")
	}
	dir := t.TempDir()
	idle := newLocker(t)
	idle.do("open f " + filepath.Join(dir, "idle"))
	// Idle: its threads sleep in futex, epoll_pwait, nanosleep or its
	// read of stdin (one may be passing through another call: asked
	// again until it is not).
	deadline := time.Now().Add(probablyStillBlocked)
	for !notInFileLock(idle.pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle process with no file lock: notInFileLock false after %v", probablyStillBlocked)
		}
		time.Sleep(quiescent)
	}

	for _, tt := range []struct {
		name string
		do   []string // commands that complete
		ask  string   // then one that blocks, from a second process
	}{
		{name: "flock holder", do: []string{"flock f ex"}},
		{name: "posix holder", do: []string{"posix f w 0 1"}},
		{name: "ofd holder", do: []string{"ofd f w 0 1"}},
		{name: "flock waiter", ask: "flock f ex"},
		{name: "posix waiter", ask: "posix f w 0 1"},
		{name: "ofd waiter", ask: "ofd f r 0 1"},
	} {
		t.Run(strings.ReplaceAll(tt.name, " ", "-"), func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			p := newLocker(t)
			p.do("open f " + path)
			for _, c := range tt.do {
				p.do(c)
			}
			pid := p.pid()
			if tt.ask != "" {
				// A holder of the lock asked for, then p asks: p holds
				// nothing and waits.
				h := newLocker(t)
				h.do("open f " + path)
				h.do(strings.Replace(tt.ask, " r ", " w ", 1))
				p.ask(tt.ask)
				awaitFileWaiters(t, path, 1)
			}
			if notInFileLock(pid) {
				t.Errorf("pid %d (%s): notInFileLock true", pid, tt.name)
			}
		})
	}

	t.Run("inherited-flock", func(t *testing.T) {
		p := newLocker(t)
		p.do("open f " + filepath.Join(dir, "inherited"))
		p.do("flock f ex")
		p.send("spawn f")
		line, err := p.out.ReadString('\n')
		child, cerr := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "child ")))
		if err != nil || cerr != nil {
			t.Fatalf("spawn: %q %v", line, err)
		}
		t.Cleanup(func() { unix.Kill(child, unix.SIGKILL) })
		expectLine(t, p.out, "ok")
		if notInFileLock(child) {
			t.Errorf("pid %d holds a flock through an inherited descriptor: notInFileLock true", child)
		}
	})
}
