package lockreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/procid"
)

// stressCount returns n, the size that proves the point in make test; or
// big when LOCKWATCH_STRESS=1 (the reliability suite, make stress, runs the
// churn tests at their full size); or the count LOCKWATCH_STRESS gives, if
// it is a larger number.
func stressCount(n, big int) int {
	v := os.Getenv("LOCKWATCH_STRESS")
	if v == "1" {
		return big
	}
	if c, err := strconv.Atoi(v); err == nil && c > n {
		return c
	}
	return n
}

// mappings counts this process's memory mappings.
func mappings(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestOpenCloseChurn opens and closes a registry of one run many times in
// one process: each Open takes its own slot back, and each Close releases
// its mappings.
func TestOpenCloseChurn(t *testing.T) {
	dir := runDir(t)
	n := stressCount(3000, 100_000)
	before := -1
	for i := 0; i < n; i++ {
		r, err := Open(dir, Options{MaxProcs: 16})
		if err != nil {
			t.Fatalf("Open number %d: %v", i+1, err)
		}
		m, err := r.Mutex("churn")
		if err == nil {
			err = m.Lock(context.Background())
		}
		if err == nil {
			err = m.Unlock()
		}
		if err != nil {
			t.Fatalf("Open number %d: %v", i+1, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close number %d: %v", i+1, err)
		}
		if i == 10 {
			before = mappings(t)
		}
	}
	// Each Open maps three areas; the runtime may add a few of its own.
	if after := mappings(t); after > before+16 {
		t.Errorf("%d mappings after %d Open/Close pairs; want about the %d after the first ten", after, n, before)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Processes) != 1 || s.Processes[0].State != arena.ProcExited {
		t.Errorf("process table %+v; want this process's one slot, exited", s.Processes)
	}
}

// TestOpenCloseDistinctRuns opens and closes registries of many runs: Close
// must release the mappings and the address-space reservation of each.
func TestOpenCloseDistinctRuns(t *testing.T) {
	root := t.TempDir()
	n := stressCount(300, 100_000)
	before := -1
	for i := 0; i < n; i++ {
		dir := fmt.Sprintf("%s/run-%d", root, i)
		r, err := Open(dir, Options{MaxProcs: 4, MaxLocks: 4, MaxWaiters: 4, MaxEvents: 4})
		if err != nil {
			t.Fatalf("Open number %d: %v", i+1, err)
		}
		if _, err := r.Mutex("a"); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			before = mappings(t)
		}
	}
	if after := mappings(t); after > before+16 {
		t.Errorf("%d mappings after %d runs opened and closed; want about the %d after the first ten", after, n, before)
	}
}

// TestRestartChurn restarts worker processes in one run many more times
// than its process table has slots: slots of dead processes are reclaimed.
// Every third worker is killed holding a lock (the next one recovers it).
// At the end, live processes fill the table, so every dead worker's slot has
// gone to another process; the record of the last killed holder, and every
// event, must still name its own process (pid and start time).
func TestRestartChurn(t *testing.T) {
	dir := runDir(t)
	const slots = 4
	r := openT(t, dir, Options{MaxProcs: slots})
	n := stressCount(24, 100_000)
	ids := map[procid.ID]bool{r.Self(): true}
	self := func(c *child) procid.ID {
		var id procid.ID
		if _, err := fmt.Sscanf(c.expect("self"), "self %d %d", &id.PID, &id.Start); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
		return id
	}
	var lastKilled procid.ID
	for i := 0; i < n; i++ {
		mode := []string{"close", "exit", "kill"}[i%3]
		c := startRole(t, true, "churn", dir, "-", mode)
		id := self(c)
		switch mode {
		case "close":
			c.expect("closed")
		case "exit":
			c.expect("exiting")
		case "kill":
			c.expect("held")
			c.kill()
			lastKilled = id
		}
		_ = c.cmd.Wait()
	}
	for i := 1; i < slots; i++ {
		c := startRole(t, true, "churn", dir, "-", "live")
		self(c)
		c.expect("live")
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Processes) != slots {
		t.Errorf("%d processes; want the %d live ones", len(s.Processes), slots)
	}
	for _, p := range s.Processes {
		if st, _ := proc.Check(p.Identity()); st != proc.Alive {
			t.Errorf("process %v in the table is %v; want every slot taken by a live process", p.Identity(), st)
		}
	}
	var held *arena.Lock
	for i := range s.Locks {
		if s.Locks[i].Name == "held" {
			held = &s.Locks[i]
		}
	}
	if held == nil || held.Holder == nil || held.Holder.Identity() != lastKilled || held.Holder.ProcSlot != -1 {
		t.Errorf("lock held: %+v; want the record of its dead holder %v, with no process slot", held, lastKilled)
	}
	if len(s.Events) == 0 {
		t.Fatal("no events")
	}
	for _, e := range s.Events {
		if !ids[procid.ID{PID: e.PID, Start: e.Start}] {
			t.Errorf("event %v names pid %d start %d, no process of this run", e.Kind, e.PID, e.Start)
		}
	}
}

// TestReopenTakesOwnSlot: a process that closes and reopens a run takes its
// own slot back; two registries open at once in one process have two.
func TestReopenTakesOwnSlot(t *testing.T) {
	dir := runDir(t)
	r1, err := Open(dir, Options{MaxProcs: 2})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.procIdx == r2.procIdx {
		t.Fatalf("two open registries share slot %d", r1.procIdx)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrFull) {
		t.Fatalf("third Open in a table of 2 live slots: got %v; want ErrFull", err)
	}
	slot := r1.procIdx
	r1.Close()
	r3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r3.procIdx != slot {
		t.Errorf("reopened in slot %d; want its own closed slot %d", r3.procIdx, slot)
	}
	r2.Close()
	r3.Close()
}

// doubleUnlocks takes m n times, and each time releases it from two
// goroutines at once: exactly one may succeed. It prints how many rounds
// saw both succeed.
func doubleUnlocks(m *Mutex, n int) int {
	both := 0
	for i := 0; i < n; i++ {
		if err := m.Lock(context.Background()); err != nil {
			say("error %v", err)
			return 1
		}
		var wg sync.WaitGroup
		var errs [2]error
		start := make(chan struct{})
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[g] = m.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] == nil && errs[1] == nil {
			both++
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, ErrNotHeld) {
				say("error %v", err)
				return 1
			}
		}
	}
	say("done both=%d", both)
	return 0
}

// ownerChecks takes m n times and, while holding it, checks that the word
// and the holder record still name this process.
func ownerChecks(r *Registry, m *Mutex, n int) int {
	bad := 0
	for i := 0; i < n; i++ {
		if err := m.Lock(context.Background()); err != nil {
			say("error %v", err)
			return 1
		}
		for k := 0; k < 50; k++ {
			if m.s.Word.Load()&arena.TidMask != r.pid || m.s.Holder.Pid.Load() != r.pid {
				bad++
				break
			}
		}
		if err := m.Unlock(); err != nil {
			bad++
		}
	}
	say("done bad=%d", bad)
	return 0
}

// TestDoubleUnlockAcrossProcesses: one process releases each of its holds
// from two goroutines at once while another takes the lock in a loop. The
// second Unlock must get ErrNotHeld and never release the other process's
// hold or clear its record.
func TestDoubleUnlockAcrossProcesses(t *testing.T) {
	dir := runDir(t)
	a := startRole(t, true, "doubleunlock", dir, "-", "20000")
	b := startRole(t, true, "ownercheck", dir, "-", "20000")
	a.expect("started")
	b.expect("started")
	if got := a.expect("done"); got != "done both=0" {
		t.Errorf("double unlocker: %s; want both=0 (exactly one Unlock of each hold succeeds)", got)
	}
	if got := b.expect("done"); got != "done bad=0" {
		t.Errorf("other process: %s; want bad=0 (its holds never released or cleared by the double unlocks)", got)
	}
}

// TestKilledLeavingWaiter: a waiter that gives up is SIGKILLed right after
// releasing its waiter record. The last live waiter to give up must still
// leave the lock as it found it (no WAITERS bit left behind).
func TestKilledLeavingWaiter(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	m, _ := r.Mutex("test.lock")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := startRoleEnv(t, false, "cancelwait", dir, []string{"LOCKREG_TEST_HOOK=waiter-released"})
	w.expect("waiting")
	waitForWaiter(t, dir, w.pid())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Lock(ctx) }()
	waitForWaiter(t, dir, os.Getpid())
	if _, err := w.stdin.Write([]byte("cancel\n")); err != nil {
		t.Fatal(err)
	}
	w.expect("at waiter-released")
	w.kill()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want Canceled", err)
	}
	if v := m.s.Word.Load(); v != r.pid {
		t.Errorf("lock word %#x after every waiter left; want %#x (held, no WAITERS)", v, r.pid)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestStaleWaiterSlotReclaimed: with one waiter slot, a waiter is SIGKILLed
// while waiting; the next waiter reclaims its slot. A live waiter's slot is
// never taken.
func TestStaleWaiterSlotReclaimed(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxWaiters: 1})
	m, _ := r.Mutex("test.lock")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock()
	waitFor := func(want int) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- m.Lock(ctx) }()
		// The in-process waiter is recorded in the slot, or (table full)
		// only counted in the lock's slow path.
		deadline := time.Now().Add(probablyStillBlocked)
		for {
			s, err := arena.ReadSnapshot(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Waiters) == 1 && s.Waiters[0].PID == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiters %+v; want the one slot held by pid %d", s.Waiters, want)
			}
			time.Sleep(time.Millisecond) // polling the arena: the condition is the waiter record
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v; want Canceled", err)
		}
	}
	dead := startRole(t, false, "wait", dir)
	dead.expect("waiting")
	waitForWaiter(t, dir, dead.pid())
	dead.kill()
	waitFor(os.Getpid()) // reclaimed from the dead waiter

	live := startRole(t, false, "wait", dir)
	live.expect("waiting")
	waitForWaiter(t, dir, live.pid())
	waitFor(live.pid()) // kept: its owner lives
}

// TestNamesLockTakenFromDeadAllocator: a process SIGKILLed while it holds
// the name-allocation lock does not block the run's other processes from
// creating locks.
func TestNamesLockTakenFromDeadAllocator(t *testing.T) {
	modes(t, func(t *testing.T, robust bool) {
		dir := runDir(t)
		r := openT(t, dir, Options{})
		c := startRoleEnv(t, robust, "allocname", dir, []string{"LOCKREG_TEST_HOOK=names-locked"})
		c.expect("at names-locked")
		if w := r.a.Hdr.NamesLock.Load(); w&arena.TidMask != uint32(c.pid()) {
			t.Fatalf("names lock %#x; want it held by %d", w, c.pid())
		}
		c.kill()
		done := make(chan error, 1)
		go func() {
			_, err := r.Mutex("after.death")
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(probablyStillBlocked):
			t.Fatal("Mutex blocked on the names lock of a dead process")
		}
		if w := r.a.Hdr.NamesLock.Load(); w != 0 {
			t.Errorf("names lock %#x after use; want 0", w)
		}
	})
}

// openCloseLinked opens and closes the run in dir n times, using a lock each
// time, then tries n more Opens that fail (the process table is full of
// live processes), and returns how many robust-list entries, mappings and
// open files it had after the first round minus before, and after the
// second minus after the first: all 0 when Close and a failing Open
// release everything.
func openCloseLinked(dir string, n int) string {
	count := func() (linked, maps, fds int) {
		robust.mu.Lock()
		linked = robust.linked
		robust.mu.Unlock()
		b, _ := os.ReadFile("/proc/self/maps")
		ents, _ := os.ReadDir("/proc/self/fd")
		return linked, strings.Count(string(b), "\n"), len(ents)
	}
	l0, m0, f0 := count()
	for i := 0; i < n; i++ {
		r, err := Open(dir, Options{})
		if err == nil {
			var m *Mutex
			if m, err = r.Mutex("oc." + strconv.Itoa(i%4)); err == nil {
				err = m.Lock(context.Background())
				err = errors.Join(err, m.Unlock())
			}
			err = errors.Join(err, r.Close())
		}
		if err != nil {
			return "error " + err.Error()
		}
	}
	l1, m1, f1 := count()
	// Fill the table with registries of this process, then fail.
	var open []*Registry
	for {
		r, err := Open(dir, Options{})
		if err != nil {
			break
		}
		open = append(open, r)
	}
	l2, m2, f2 := count()
	for i := 0; i < n; i++ {
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrFull) {
			return fmt.Sprintf("error Open of a full table: got %v; want ErrFull", err)
		}
	}
	l3, m3, f3 := count()
	for _, r := range open {
		r.Close()
	}
	return fmt.Sprintf("robust=%v closed %d/%d/%d failed %d/%d/%d", robust.ok, l1-l0, min(m1-m0, 16)/16*16, max(f1-f0, 0),
		l3-l2, min(m3-m2, 16)/16*16, max(f3-f2, 0))
}

// TestCloseAndFailedOpenReleaseEverything: in a process with the kernel's
// robust list (a static child), Open/Close pairs and failing Opens leave no
// robust-list entry, mapping (beyond the runtime's own few) or file behind.
func TestCloseAndFailedOpenReleaseEverything(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxProcs: 8})
	_ = r
	c := startRole(t, true, "openclose", dir, "-", "200")
	if got, want := c.expect("linked"), "linked robust=true closed 0/0/0 failed 0/0/0"; got != want {
		t.Errorf("child: %q; want %q (entries/mappings/files added by 200 Open/Close pairs, then by 200 failed Opens)", got, want)
	}
}

// deadIdentity returns the identity of a process that has exited and been
// reaped.
func deadIdentity(t *testing.T) procid.ID {
	t.Helper()
	c := startRole(t, false, "hold", runDir(t))
	c.expect("held")
	st, err := proc.ReadStat(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	c.kill()
	return st.Identity()
}

// fillSlot makes slot i look claimed by owner o, with fields written for
// claim tag describing process id in state.
func fillSlot(r *Registry, i uint32, o, tag uint64, id procid.ID, state uint32) {
	p := r.a.Proc(i)
	p.Owner.Store(o)
	p.Write(arena.ProcCopy{State: state, Pid: uint32(id.PID), Start: id.Start, Registered: nanotime(), Tag: tag})
}

// TestSlowClaimantKeepsItsSlot: a slot whose new claimant has not yet
// written its fields (they still describe the dead previous owner) is not
// reclaimed while the claimant lives, even when the claimant has the dead
// owner's pid (reused) and the fields' start time then proves that pid
// "reused".
func TestSlowClaimantKeepsItsSlot(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxProcs: 3})
	dead := deadIdentity(t)
	live := startRole(t, false, "hold", runDir(t))
	live.expect("held")
	lpid := uint64(live.pid())
	// Slot 1: claimed by the live process (generation 2) over a dead one.
	fillSlot(r, 1, 2<<32|lpid, 1<<32|uint64(dead.PID), dead, arena.SlotRunning)
	// Slot 2: claimed by the live process, whose pid the dead owner had.
	fillSlot(r, 2, 2<<32|lpid, 1<<32|lpid, procid.ID{PID: int(lpid), Start: dead.Start}, arena.SlotRunning)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrFull) {
		t.Fatalf("Open with every slot live or being claimed by a live process: got %v; want ErrFull", err)
	}
	live.kill()
	// Now the claimants are dead (pid gone): both slots can be reclaimed.
	for i := 0; i < 2; i++ {
		r2, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open after the slow claimant died: %v", err)
		}
		defer r2.Close()
	}
}

// TestReclaimersRace: goroutines race to reclaim a table of dead processes'
// slots; each slot goes to exactly one.
func TestReclaimersRace(t *testing.T) {
	const slots = 8
	dir := runDir(t)
	r := openT(t, dir, Options{MaxProcs: slots + 1})
	dead := deadIdentity(t)
	// Widen the window between a reclaimer's decision and its claim, so
	// that the others decide on the same slot meanwhile.
	testHook = func(at string) {
		if at == "reclaim-decided" {
			for range 20 {
				runtime.Gosched()
			}
		}
	}
	defer func() { testHook = nil }()
	for round := 0; round < 20; round++ {
		for i := uint32(1); i <= slots; i++ {
			o := uint64(round*slots+int(i))<<32 | uint64(dead.PID)
			fillSlot(r, i, o, o, dead, []uint32{arena.SlotRunning, arena.SlotExited}[i%2])
		}
		var mu sync.Mutex
		won := map[uint32]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 4*slots; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A registry of this process, as Open makes it, racing
				// on the same arena.
				rr := &Registry{a: r.a, pid: r.pid, self: r.self}
				<-start
				if idx, _, _, ok := rr.claimSlot(); ok {
					mu.Lock()
					won[idx]++
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(won) != slots {
			t.Fatalf("round %d: slots won %v; want each of the %d dead slots won", round, won, slots)
		}
		for idx, n := range won {
			if n != 1 || idx == 0 {
				t.Fatalf("round %d: slot %d won %d times; want once, and never the live slot 0", round, idx, n)
			}
		}
	}
}

// BenchmarkOpenClose is one Open and Close of a run by a process that has
// opened it before (it takes its own slot back).
func BenchmarkOpenClose(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "run")
	for b.Loop() {
		r, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFastPathGuard compares what the fast paths pay so that Close can
// unmap safely: pinning (procPin, procUnpin: what they do) against counting
// themselves in and out with two atomic additions (what they do not).
func BenchmarkFastPathGuard(b *testing.B) {
	b.Run("pin", func(b *testing.B) {
		for b.Loop() {
			procPin()
			procUnpin()
		}
	})
	b.Run("count", func(b *testing.B) {
		var n atomic.Int64
		for b.Loop() {
			n.Add(1)
			n.Add(-1)
		}
	})
}

// TestRunDirBoundedBySlots: many sequential short lives in one run, half of
// them without Close, wrap a small process table many times over. The run
// directory then holds files only of the processes in the table and of the
// processes the run's records still name: here a worker killed holding a
// lock, whose stacks a report must still show.
func TestRunDirBoundedBySlots(t *testing.T) {
	dir := runDir(t)
	const slots = 4
	// Four locks, four events each: the rings wrap, and old lives' events go.
	r := openT(t, dir, Options{MaxProcs: slots, MaxLocks: 4, MaxEvents: 16})
	self := func(c *child) procid.ID {
		var id procid.ID
		if _, err := fmt.Sscanf(c.expect("self"), "self %d %d", &id.PID, &id.Start); err != nil {
			t.Fatal(err)
		}
		return id
	}
	c := startRole(t, true, "churn", dir, "-", "kill")
	killed := self(c)
	c.expect("held")
	c.kill()
	_ = c.cmd.Wait()
	n := stressCount(6*slots, 100_000)
	for i := 0; i < n; i++ {
		mode := []string{"close", "exit"}[i%2]
		c := startRole(t, true, "churn", dir, "-", mode)
		self(c)
		c.expect(map[string]string{"close": "closed", "exit": "exiting"}[mode])
		_ = c.cmd.Wait()
	}
	// One more joins, reclaiming a slot, and stays: the directory is
	// looked at as that reclaim left it (a life that runs after a reclaim
	// can overwrite events, and the files of the processes they named wait
	// for the next reclaim).
	c = startRole(t, true, "churn", dir, "-", "live")
	self(c)
	c.expect("live")

	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	named := map[procid.ID]string{}
	for _, p := range s.Processes {
		named[p.Identity()] = "the process table"
	}
	var held *arena.Lock
	for i, l := range s.Locks {
		if l.Holder != nil {
			named[l.Holder.Identity()] = "a holder record"
		}
		if l.Name == "held" {
			held = &s.Locks[i]
		}
	}
	for _, e := range s.Events {
		if _, ok := named[procid.ID{PID: e.PID, Start: e.Start}]; !ok {
			named[procid.ID{PID: e.PID, Start: e.Start}] = "an event"
		}
	}
	if _, ok := named[killed]; !ok || len(s.Processes) != slots {
		t.Fatalf("process table of %d; named: %v; want %d slots taken, and the killed holder %v named", len(s.Processes), named, slots, killed)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	withFiles := map[procid.ID]bool{}
	for _, e := range ents {
		id, ok := arena.ProcessOfFile(e.Name())
		if !ok {
			continue
		}
		withFiles[id] = true
		if _, ok := named[id]; !ok {
			t.Errorf("%s: a file of process %v, which nothing in the run names", e.Name(), id)
		}
	}
	if len(withFiles) > len(named) {
		t.Errorf("files of %d processes after %d lives; want at most the %d the run names", len(withFiles), n+2, len(named))
	}
	// The killed holder's files stay: its stack is still shown.
	if held == nil || held.Holder == nil || held.Holder.Identity() != killed {
		t.Fatalf("lock held: %+v; want its dead holder %v", held, killed)
	}
	if frames, ok := s.Stack(killed, held.Holder.Stack); !ok || len(frames) == 0 {
		t.Errorf("the dead holder's stack: %v, %v; want its frames from its dictionary", frames, ok)
	}
	if !withFiles[killed] {
		t.Errorf("the dead holder %v has no files left", killed)
	}
	_ = r
}
