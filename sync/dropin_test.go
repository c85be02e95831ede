//go:build !nolockwatch && (amd64 || arm64)

//lint:file-ignore SA2001 the locks themselves are what these tests take and compare

package sync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	gosync "sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	lwsync "github.com/lockwatch/lockwatch/sync"
	"go.uber.org/goleak"
)

// TestSizes: a Mutex is at most twice sync's size, an RWMutex too.
func TestSizes(t *testing.T) {
	if s, g := unsafe.Sizeof(lwsync.Mutex{}), unsafe.Sizeof(gosync.Mutex{}); s > 2*g {
		t.Errorf("Mutex is %d bytes; sync's %d", s, g)
	}
	if s, g := unsafe.Sizeof(lwsync.RWMutex{}), unsafe.Sizeof(gosync.RWMutex{}); s > 2*g {
		t.Errorf("RWMutex is %d bytes; sync's %d", s, g)
	}
}

// TestUnlockedEqualsFresh: a mutex locked and unlocked, by any path
// (uncontended, contended, read, TryLock, named), is equal to a fresh one,
// as with sync: by ==, reflect.DeepEqual and %v.
func TestUnlockedEqualsFresh(t *testing.T) {
	for _, records := range []bool{true, false} {
		t.Run(fmt.Sprintf("records=%v", records), func(t *testing.T) {
			defer lwsync.SetRecords(lwsync.SetRecords(records))
			unlockedEqualsFresh(t)
		})
	}
}

func unlockedEqualsFresh(t *testing.T) {
	type guarded struct {
		mu lwsync.Mutex
		rw lwsync.RWMutex
	}
	var g guarded
	fresh := fmt.Sprintf("%v", &guarded{})
	g.mu.Lock()
	g.mu.Unlock()
	if !g.mu.TryLock() {
		t.Fatal("TryLock failed")
	}
	g.mu.Unlock()
	g.rw.Lock()
	g.rw.Unlock()
	g.rw.RLock()
	g.rw.RLock()
	g.rw.RUnlock()
	g.rw.RUnlock()
	// Contended: a waiter that then holds.
	g.mu.Lock()
	g.rw.Lock()
	done := make(chan bool)
	go func() { g.mu.Lock(); g.mu.Unlock(); done <- true }()
	go func() { g.rw.RLock(); g.rw.RUnlock(); done <- true }()
	time.Sleep(10 * time.Millisecond)
	g.mu.Unlock()
	g.rw.Unlock()
	<-done
	<-done
	// A read lock released by another goroutine.
	g.rw.RLock()
	go func() { g.rw.RUnlock(); done <- true }()
	<-done
	lwsync.SetName(&g.mu, "named")
	g.mu.Lock()
	g.mu.Unlock()

	if g != (guarded{}) {
		t.Errorf("== fresh is false: %+v", &g)
	}
	if !reflect.DeepEqual(&g, &guarded{}) {
		t.Errorf("DeepEqual fresh is false: %+v", &g)
	}
	if s := fmt.Sprintf("%v", &g); s != fresh {
		t.Errorf("%%v is %s; fresh %s", s, fresh)
	}
}

// TestNoGoroutine: locking, waiting and naming start no goroutine that
// goleak sees, and work inside a synctest bubble, whose end checks that
// every goroutine of the bubble has exited.
func TestNoGoroutine(t *testing.T) {
	for _, records := range []bool{true, false} {
		t.Run(fmt.Sprintf("records=%v", records), func(t *testing.T) {
			defer lwsync.SetRecords(lwsync.SetRecords(records))
			noGoroutine(t)
		})
	}
}

func noGoroutine(t *testing.T) {
	var mu lwsync.Mutex
	var rw lwsync.RWMutex
	mu.Lock()
	go func() { time.Sleep(5 * time.Millisecond); mu.Unlock() }()
	mu.Lock()
	mu.Unlock()
	rw.RLock()
	rw.RUnlock()
	goleak.VerifyNone(t)

	synctest.Test(t, func(t *testing.T) {
		// A goroutine blocked on a mutex is not durably blocked in a
		// bubble, so the holder yields rather than sleeps to let the
		// others reach their slow path (the clock, the waiter records).
		var mu lwsync.Mutex
		var rw lwsync.RWMutex
		done := make(chan bool)
		mu.Lock()
		rw.Lock()
		go func() { mu.Lock(); mu.Unlock(); done <- true }()
		go func() { rw.RLock(); rw.RUnlock(); done <- true }()
		for i := 0; i < 100; i++ {
			runtime.Gosched()
		}
		mu.Unlock()
		rw.Unlock()
		<-done
		<-done
		lwsync.SetName(&mu, "in a bubble")
		synctest.Wait()
	})
}

// racy builds testdata/racy, with -race if race, with the drop-in or
// (tags nolockwatch) with sync itself.
func racy(t *testing.T, race bool, tags string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "racy")
	args := []string{"build", "-tags", tags, "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./testdata/racy")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	return bin
}

// TestRacesStillReported: a data race between goroutines that lock
// unrelated mutexes (fresh ones, waiting ones, nested ones, the same ones
// over and over) is reported by the race detector with the drop-in, as
// with sync: the records add no happens-before edge.
func TestRacesStillReported(t *testing.T) {
	bin, std := racy(t, true, ""), racy(t, true, "nolockwatch")
	bins := map[string]string{"drop-in": bin, "drop-in records": bin, "sync": std}
	for _, way := range []string{"first-locks", "clock", "nested", "unrelated"} {
		for _, with := range []string{"drop-in", "drop-in records", "sync"} {
			cmd := exec.Command(bins[with], way)
			cmd.Env = append(os.Environ(), "LOCKWATCH_DROPIN=owner")
			if with == "drop-in records" {
				cmd.Env = append(os.Environ(), "LOCKWATCH_DROPIN=records")
			}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 66 || !bytes.Contains(out, []byte("WARNING: DATA RACE")) {
				t.Errorf("%s with %s: %v; want the race reported (exit 66)\n%s", way, with, err, out)
			}
		}
	}
}

// TestDeadlockStillDetected: a program whose goroutines all block on
// drop-in mutexes dies at once with the runtime's "all goroutines are
// asleep", as with sync. (Built without -race: under the race detector
// the runtime detects no deadlock, with sync either.)
func TestDeadlockStillDetected(t *testing.T) {
	bin := racy(t, false, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, mode := range []string{"owner", "records"} {
		cmd := exec.CommandContext(ctx, bin, "deadlock") // killed if not detected
		cmd.Env = append(os.Environ(), "LOCKWATCH_DROPIN="+mode)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "all goroutines are asleep - deadlock!") {
			t.Errorf("deadlock, %s mode: %v; want the runtime's deadlock error (exit 2)\n%s", mode, err, out)
		}
	}
}

// TestHolderSeenByWaiter: a holder that did not wait has no time until a
// goroutine waits for it; then it has when that goroutine found it held
// (to the millisecond, never later than the waiter's own time), marked as
// such; once it is unlocked and locked again without waiting, no time.
func TestHolderSeenByWaiter(t *testing.T) {
	var mu lwsync.Mutex
	holder := func() inproc.Lock {
		for _, l := range inproc.Take(0).Locks {
			if l.ID == lwsync.IDOf(&mu) {
				return l
			}
		}
		t.Fatal("the mutex is not listed")
		return inproc.Lock{}
	}
	mu.Lock()
	if l := holder(); l.Holder.Since != 0 || l.HolderSeen {
		t.Errorf("uncontended holder: since %d seen %v; want no time", l.Holder.Since, l.HolderSeen)
	}
	done := make(chan bool)
	go func() { mu.Lock(); mu.Unlock(); done <- true }()
	var l inproc.Lock
	waitFor(t, "the waiter", func() bool { l = holder(); return len(l.Waiters) == 1 })
	w := l.Waiters[0].Since
	if !l.HolderSeen || l.Holder.Since == 0 || l.Holder.Since > w || l.Holder.Since < w-int64(time.Millisecond) {
		t.Errorf("holder since %d seen %v; want seen, within the millisecond before the waiter's %d", l.Holder.Since, l.HolderSeen, w)
	}
	mu.Unlock()
	<-done
	mu.Lock()
	if l := holder(); l.Holder.Since != 0 || l.HolderSeen {
		t.Errorf("locked again: since %d seen %v; want no time (the stamp was the earlier hold's)", l.Holder.Since, l.HolderSeen)
	}
	mu.Unlock()
}
