package record_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/lockreg"
)

// TestLockregReadsClockUnpinned: lockreg's Lock and Unlock run pinned to
// their P on the fast path (runtime.procPin), where blocking is a fatal
// error of the runtime ("schedule: holding locks"). A stale coarse clock
// takes a mutex (once a second under steady use, its ticker restarts), so
// the clock must be read before the pin. Here the mutex is held while a
// goroutine locks, then unlocks: it must wait for the clock unpinned, and
// go on once the mutex is released. Before the fix the runtime died.
func TestLockregReadsClockUnpinned(t *testing.T) {
	r, err := lockreg.Open(filepath.Join(t.TempDir(), "run"), lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.Mutex("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"Lock", "Unlock"} {
		release := record.HoldCoarse()
		done := make(chan error)
		go func() {
			if op == "Lock" {
				done <- m.Lock(context.Background())
			} else {
				done <- m.Unlock()
			}
		}()
		waitBlockedInClock(t, op)
		release()
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
}

// waitBlockedInClock waits until a goroutine is blocked in the coarse
// clock's restart under lockreg's op.
func waitBlockedInClock(t *testing.T, op string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // bounds a broken build only
	buf := make([]byte, 1<<20)
	for {
		all := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(all, "\n\n") {
			if strings.Contains(g, "record.wakeCoarse") && strings.Contains(g, "lockreg.(*Mutex)."+op) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked in the clock under %s:\n%s", op, all)
		}
		runtime.Gosched()
	}
}
