//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	gosync "sync"
	"testing"
	"time"
	"weak"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	lwsync "github.com/lockwatch/lockwatch/sync"
	"go.uber.org/goleak"
)

// Both are sync.Lockers, as sync's are.
var (
	_ gosync.Locker = (*lwsync.Mutex)(nil)
	_ gosync.Locker = (*lwsync.RWMutex)(nil)
	_ gosync.Locker = new(lwsync.RWMutex).RLocker()
)

// envRole makes the test binary play a part in a child process.
const envRole = "LWSYNC_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "":
	case "unlock-unlocked":
		defer func() { fmt.Println("recovered:", recover()) }()
		var mu lwsync.Mutex
		mu.Unlock()
		fmt.Println("survived")
		return
	case "runlock-unlocked":
		defer func() { fmt.Println("recovered:", recover()) }()
		var rw lwsync.RWMutex
		rw.RLock()
		rw.RUnlock()
		rw.RUnlock()
		fmt.Println("survived")
		return
	case "unlock-unlocked-rw":
		defer func() { fmt.Println("recovered:", recover()) }()
		var rw lwsync.RWMutex
		rw.Unlock()
		fmt.Println("survived")
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", os.Getenv(envRole))
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

// frameOf symbolizes a return address as a stack would.
func frameOf(pc uintptr) runtime.Frame {
	f, _ := runtime.CallersFrames([]uintptr{pc}).Next()
	return f
}

// line returns the line of its caller.
func line() int {
	_, _, l, _ := runtime.Caller(1)
	return l
}

// findLock returns the snapshot's record of the lock whose State is inside
// the value at p (its id), or fails.
func findLock(t *testing.T, id uint64) inproc.Lock {
	t.Helper()
	for _, l := range inproc.Take(0).Locks {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("lock %d not in the snapshot", id)
	return inproc.Lock{}
}

// TestZeroValueAndUnlockElsewhere: the zero value works; a lock taken by
// one goroutine may be released by another, as with sync.
func TestZeroValueAndUnlockElsewhere(t *testing.T) {
	var mu lwsync.Mutex
	mu.Lock()
	if mu.TryLock() {
		t.Fatal("TryLock succeeded on a locked Mutex")
	}
	done := make(chan struct{})
	go func() { mu.Unlock(); close(done) }()
	<-done
	if !mu.TryLock() {
		t.Fatal("TryLock failed on a Mutex unlocked by another goroutine")
	}
	mu.Unlock()

	var rw lwsync.RWMutex
	rw.RLock()
	if !rw.TryRLock() {
		t.Fatal("TryRLock failed with only readers")
	}
	if rw.TryLock() {
		t.Fatal("TryLock succeeded on a read-locked RWMutex")
	}
	done = make(chan struct{})
	go func() { rw.RUnlock(); rw.RUnlock(); close(done) }()
	<-done
	if !rw.TryLock() {
		t.Fatal("TryLock failed after both readers left")
	}
	if rw.TryRLock() {
		t.Fatal("TryRLock succeeded on a write-locked RWMutex")
	}
	rw.Unlock()
	l := rw.RLocker()
	l.Lock()
	if rw.TryLock() {
		t.Fatal("TryLock succeeded while RLocker holds")
	}
	l.Unlock()

	// Cond works with it, through sync's Locker.
	c := lwsync.NewCond(&mu)
	ready := false
	go func() { mu.Lock(); ready = true; c.Broadcast(); mu.Unlock() }()
	mu.Lock()
	for !ready {
		c.Wait()
	}
	mu.Unlock()
}

// TestHolderRecord: the holder's goroutine (against the parsed id), the
// site of Lock, and since, then nothing after Unlock.
func TestHolderRecord(t *testing.T) {
	var mu lwsync.Mutex
	before := record.Nanotime()
	mu.Lock()
	site := line()
	after := record.Nanotime()
	l := lockOf(t, &mu)
	if g := record.ParseGoid(); l.Holder.Goroutine != g {
		t.Errorf("holder goroutine %d; want %d", l.Holder.Goroutine, g)
	}
	f := frameOf(l.Holder.PC)
	if !strings.HasSuffix(f.Function, "TestHolderRecord") || f.Line != site-1 {
		t.Errorf("acquire site %s:%d; want TestHolderRecord line %d", f.Function, f.Line, site-1)
	}
	// An acquire that did not wait reads no clock.
	if l.Holder.Since != 0 {
		t.Errorf("since %d (between %d and %d); want 0, not known", l.Holder.Since, before, after)
	}
	if l.Name != "" || frameOf(l.First).Line != site-1 {
		t.Errorf("name %q, first locked at line %d; want no name, line %d", l.Name, frameOf(l.First).Line, site-1)
	}
	mu.Unlock()
	if h, ok := inproc.Describe(l.ID); ok {
		t.Errorf("after Unlock: %+v; want no record", h.Holder)
	}
	lwsync.SetName(&mu, "queue.buf")
	mu.Lock()
	if h, _ := inproc.Describe(l.ID); h.Name != "queue.buf" {
		t.Errorf("name %q after SetName; want queue.buf", h.Name)
	}
	mu.Unlock()
}

// lockOf returns the snapshot record of a held lock.
func lockOf(t *testing.T, p any) inproc.Lock {
	t.Helper()
	var id uint64
	switch m := p.(type) {
	case *lwsync.Mutex:
		id = lwsync.IDOf(m)
	case *lwsync.RWMutex:
		id = lwsync.IDOf(m)
	}
	return findLock(t, id)
}

// TestReadersRecorded: each reader with its goroutine and site; readers
// beyond the slots counted; RUnlock by another goroutine keeps the count.
func TestReadersRecorded(t *testing.T) {
	var rw lwsync.RWMutex
	const n = 5
	ids := make(chan int64, n)
	release := make(chan struct{})
	var wg gosync.WaitGroup
	var site int
	for i := 0; i < n; i++ {
		wg.Go(func() {
			rw.RLock()
			ids <- record.ParseGoid()
			<-release
			rw.RUnlock()
		})
	}
	site = line() - 6
	want := map[int64]bool{}
	for i := 0; i < n; i++ {
		want[<-ids] = true
	}
	l := lockOf(t, &rw)
	if len(l.Readers)+l.MoreReaders != n {
		t.Fatalf("%d readers + %d counted; want %d", len(l.Readers), l.MoreReaders, n)
	}
	for _, r := range l.Readers {
		if !want[r.Goroutine] {
			t.Errorf("reader goroutine %d is not one of %v", r.Goroutine, want)
		}
		if f := frameOf(r.PC); f.Line != site {
			t.Errorf("reader site %s:%d; want line %d", f.Function, f.Line, site)
		}
	}
	close(release)
	wg.Wait()
	if h, ok := inproc.Describe(l.ID); ok {
		t.Errorf("after RUnlock: %+v; want no record", h)
	}
	for _, k := range inproc.Take(0).Locks {
		if k.ID == l.ID {
			t.Errorf("lock still listed after every reader left: %+v", k)
		}
	}

	// A read lock released by another goroutine.
	rw.RLock()
	done := make(chan struct{})
	go func() { rw.RUnlock(); close(done) }()
	<-done
	for _, k := range inproc.Take(0).Locks {
		if k.ID == l.ID {
			t.Errorf("lock listed after another goroutine read-unlocked it: %+v", k)
		}
	}
}

// waitFor polls cond (the snapshot) until it holds, for at most
// probablyStillBlocked.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", probablyStillBlocked, what)
		}
		time.Sleep(time.Millisecond)
	}
}

const probablyStillBlocked = testbound.ProbablyStillBlocked

// TestWaitersRecorded: a blocked Lock and a blocked RLock each appear as
// a waiter with goroutine, mode and stack; the writer that then acquires
// keeps its stack as the holder's.
func TestWaitersRecorded(t *testing.T) {
	var rw lwsync.RWMutex
	rw.Lock()
	lockID := lwsync.IDOf(&rw)
	got := make(chan int64, 2)
	var wg gosync.WaitGroup
	wg.Go(func() { got <- record.ParseGoid(); writeWaiter(&rw) })
	writer := <-got
	waitFor(t, "the writer's waiter record", func() bool { return len(findLock(t, lockID).Waiters) == 1 })
	//lint:ignore SA2001 the lock itself is what is tested
	wg.Go(func() { got <- record.ParseGoid(); rw.RLock(); rw.RUnlock() })
	reader := <-got
	waitFor(t, "both waiter records", func() bool { return len(findLock(t, lockID).Waiters) == 2 })
	l := findLock(t, lockID)
	for _, w := range l.Waiters {
		switch w.Goroutine {
		case writer:
			if !w.Write || len(w.Stack) == 0 || !strings.HasSuffix(frameOf(w.Stack[0]).Function, "writeWaiter") {
				t.Errorf("writer's waiter record %+v (top %s); want write, from writeWaiter", w, frameOf(w.Stack[0]).Function)
			}
		case reader:
			if w.Write || len(w.Stack) == 0 || !strings.Contains(frameOf(w.Stack[0]).Function, "TestWaitersRecorded") {
				t.Errorf("reader's waiter record %+v; want read, from the test", w)
			}
		default:
			t.Errorf("waiter goroutine %d; want %d or %d", w.Goroutine, writer, reader)
		}
	}
	rw.Unlock()
	wg.Wait()
	if len(inproc.Take(0).Locks) != 0 {
		t.Errorf("locks listed after all released: %+v", inproc.Take(0).Locks)
	}
}

// writeWaiter takes rw after waiting, and checks, holding it, that its
// holder record has its stack.
//
//go:noinline
func writeWaiter(rw *lwsync.RWMutex) {
	rw.Lock()
	l, _ := inproc.Describe(lwsync.IDOf(rw))
	var stack []uintptr
	for _, k := range inproc.Take(0).Locks {
		if k.ID == l.ID {
			stack = k.HolderStack
		}
	}
	if len(stack) == 0 || !strings.HasSuffix(frameOf(stack[0]).Function, "writeWaiter") {
		panic(fmt.Sprintf("holder after a wait has stack %v; want one from writeWaiter", stack))
	}
	rw.Unlock()
}

// TestNoAllocs: after the first Lock, acquires allocate nothing.
func TestNoAllocs(t *testing.T) {
	var mu lwsync.Mutex
	var rw lwsync.RWMutex
	mu.Lock()
	//lint:ignore SA2001 the lock itself is what is tested
	mu.Unlock()
	rw.Lock()
	//lint:ignore SA2001 the lock itself is what is tested
	rw.Unlock()
	if n := testing.AllocsPerRun(100, func() {
		mu.Lock()
		//lint:ignore SA2001 the lock itself is what is tested
		mu.Unlock()
		rw.Lock()
		//lint:ignore SA2001 the lock itself is what is tested
		rw.Unlock()
		rw.RLock()
		//lint:ignore SA2001 the lock itself is what is tested
		rw.RUnlock()
		if mu.TryLock() {
			mu.Unlock()
		}
		if rw.TryRLock() {
			rw.RUnlock()
		}
	}); n != 0 {
		t.Errorf("%v allocations per round; want 0", n)
	}
}

// TestDroppedMutexCollected: nothing in the package keeps a mutex alive.
func TestDroppedMutexCollected(t *testing.T) {
	type guarded struct {
		mu lwsync.RWMutex
		n  int
	}
	g := &guarded{}
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	g.mu.RLock()
	//lint:ignore SA2001 the lock itself is what is tested
	g.mu.RUnlock()
	w := weak.Make(g)
	id := lwsync.IDOf(&g.mu)
	g = nil
	deadline := time.Now().Add(probablyStillBlocked)
	for w.Value() != nil {
		if time.Now().After(deadline) {
			t.Fatal("a dropped RWMutex was not collected")
		}
		runtime.GC()
	}
	// Its entry goes too (the cleanup runs after the collection).
	for {
		if _, ok := inproc.Describe(id); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a collected RWMutex stayed in the table")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestMisuseIsFatal: Unlock of an unlocked Mutex, Unlock of an unlocked
// RWMutex and RUnlock without RLock end the process with sync's own fatal
// error, which recover cannot catch.
func TestMisuseIsFatal(t *testing.T) {
	for _, c := range []struct{ role, want string }{
		{"unlock-unlocked", "fatal error: sync: unlock of unlocked mutex"},
		{"unlock-unlocked-rw", "fatal error: sync: Unlock of unlocked RWMutex"},
		{"runlock-unlocked", "fatal error: sync: RUnlock of unlocked RWMutex"},
	} {
		t.Run(c.role, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envRole+"="+c.role)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Errorf("child ended with %v; want exit status 2", err)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("child output lacks %q:\n%s", c.want, out)
			}
			if strings.Contains(string(out), "recovered") || strings.Contains(string(out), "survived") {
				t.Errorf("the child recovered or survived:\n%s", out)
			}
		})
	}
}

// TestVetCopylocks: go vet's copylocks check reports a copied Mutex and
// RWMutex of this package, as it does sync's.
func TestVetCopylocks(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	cmd := exec.Command(goBin, "vet", "./testdata/copylock")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("go vet found nothing in testdata/copylock:\n%s", out)
	}
	for _, want := range []string{"copylock.go:11", "copylock.go:15", "copylock.go:19", "passes lock by value"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go vet output lacks %q:\n%s", want, out)
		}
	}
}
