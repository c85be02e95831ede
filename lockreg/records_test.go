package lockreg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// tornReads has a writer goroutine alternate two identities in a holder
// record (and clear it between) while this goroutine reads it at least n
// times. It returns how many consistent-looking copies paired one identity's
// pid with the other's start time, and how many complete copies of each
// identity it saw: a test that saw neither, or only one, proved nothing
// (the writer's stores optimized away, or never run beside the reader). It
// reads on, up to 10n times, until it has seen both.
func tornReads(s *arena.LockSlot, n int) (torn, seen1, seen2 int) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				s.Holder.Set(1, 1111, 100, 1, 1, 1)
			} else {
				s.Holder.Set(2, 2222, 200, 2, 2, 2)
			}
			s.Holder.Clear()
		}
	}()
	// At least n reads, and on until both identities were seen: on a loaded
	// machine the writer may get the CPU only now and then. The deadline
	// only bounds a run that can never see them (the stores optimised away);
	// the test then fails on the counts.
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n || ((seen1 == 0 || seen2 == 0) && (i%1024 != 0 || time.Now().Before(deadline))); i++ {
		if i >= n && i%1024 == 0 {
			runtime.Gosched()
		}
		c, ok := s.Holder.Read(1)
		switch {
		case !ok:
		case (c.Pid == 1111 && c.Start != 100) || (c.Pid == 2222 && c.Start != 200):
			torn++
		case c.Pid == 1111 && c.Goid == 1 && c.Stack == 1:
			seen1++
		case c.Pid == 2222 && c.Goid == 2 && c.Stack == 2:
			seen2++
		}
	}
	close(stop)
	<-done
	return torn, seen1, seen2
}

// TestSeqlockNeverTorn runs the check in a child built without the race
// detector (whose instrumentation would hide what the compiler does to plain
// stores), and in this process. Each run must have seen both writers'
// identities, or it proved nothing.
func TestSeqlockNeverTorn(t *testing.T) {
	dir := runDir(t)
	c := startRole(t, true, "torncheck", dir)
	var torn, seen1, seen2 int
	line := c.expect("torn")
	if _, err := fmt.Sscanf(line, "torn %d seen %d %d", &torn, &seen1, &seen2); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	if torn != 0 || seen1 == 0 || seen2 == 0 {
		t.Errorf("optimized build: %d torn copies accepted, %d and %d complete copies of the two identities; want 0 torn and both seen",
			torn, seen1, seen2)
	}
	r := openT(t, runDir(t), Options{})
	m, _ := r.Mutex("x")
	if torn, seen1, seen2 := tornReads(m.s, 200_000); torn != 0 || seen1 == 0 || seen2 == 0 {
		t.Errorf("this build: %d torn copies accepted, %d and %d complete copies of the two identities; want 0 torn and both seen",
			torn, seen1, seen2)
	}
}

func TestWaiterRingSurvivesALostTicket(t *testing.T) {
	dir := runDir(t)
	// 4 locks, 32 event slots: 8 a lock, 4 for waiter events.
	r := openT(t, dir, Options{MaxLocks: 4, MaxEvents: 32})
	m, _ := r.Mutex("a")
	waits := func(n int) {
		for i := 0; i < n; i++ {
			r.record(arena.EventWait, m.idx, int64(100+i), 0, nanotime(), 0)
		}
	}
	waits(2)
	r.a.Ring(m.idx).WaitTicket.Add(1) // a writer took a ticket and died before claiming its slot
	waits(5)
	s, _ := arena.ReadSnapshot(dir)
	if s.EventsDropped != 0 || len(s.Events) != 4 {
		t.Errorf("after a lost ticket: %d events kept, %d dropped; want 4 kept, 0 dropped (%s)", len(s.Events), s.EventsDropped, eventKinds(s))
	}
	// A slot left mid-write (odd) by a writer that died is skipped, never
	// overwritten: its later events are dropped and counted.
	half := r.a.G.RingSlots / 2
	e := r.a.RingSlot(m.idx, half)
	e.Seq.BeginAt(e.Seq.Load() | 1)
	waits(8)
	s, _ = arena.ReadSnapshot(dir)
	if s.EventsDropped != 2 || len(s.Events) != 3 {
		t.Errorf("with a slot stuck mid-write: %d kept, %d dropped; want 3 kept, 2 dropped", len(s.Events), s.EventsDropped)
	}
	for i, ev := range s.Events {
		if want := int64(100 + 5 + i); ev.Goroutine != want || ev.Kind != arena.EventWait {
			t.Errorf("event %d = %s of goroutine %d; want wait of %d", i, ev.Kind, ev.Goroutine, want)
		}
	}
}

func TestHolderRingAfterAWriterDiedMidWrite(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxLocks: 4, MaxEvents: 32})
	m, _ := r.Mutex("a")
	lockUnlock := func(n int) {
		for i := 0; i < n; i++ {
			if err := m.Lock(context.Background()); err != nil {
				t.Fatal(err)
			}
			_ = m.Unlock()
		}
	}
	lockUnlock(1)
	// A holder died after making its slot odd, before advancing the head.
	h := m.s.Holder.Ring.Load()
	half := r.a.G.RingSlots / 2
	r.a.RingSlot(m.idx, h&(half-1)).Seq.BeginAt(2*uint64(h) + 1)
	s, _ := arena.ReadSnapshot(dir)
	if got := eventKinds(s); len(s.Events) != 2 {
		t.Fatalf("with the next slot mid-write: events %s; want the acquire and release before it", got)
	}
	// The next holder writes that slot again: nothing is lost or dropped.
	lockUnlock(1)
	s, _ = arena.ReadSnapshot(dir)
	if len(s.Events) != 4 || s.EventsDropped != 0 {
		t.Errorf("after the next holder: %d events (%s), %d dropped; want 4, 0", len(s.Events), eventKinds(s), s.EventsDropped)
	}
}

func TestSnapshotOfTornRecordsReturns(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxLocks: 64, MaxWaiters: 64})
	for i := 0; i < 64; i++ {
		if _, err := r.Mutex(strings.Repeat("l", 1+i%60) + string(rune('A'+i%26)) + string(rune('a'+i/26))); err != nil {
			t.Fatal(err)
		}
	}
	// Every writer died mid-write: every record stays odd.
	for i := uint32(0); i < 64; i++ {
		r.a.Lock(i).Holder.Seq.BeginAt(1)
		w := r.a.Waiter(i)
		w.Owner.Store(4242)
		w.Seq.BeginAt(1)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Torn != 128 || len(s.Locks) != 64 || len(s.Waiters) != 0 {
		t.Errorf("got %d torn, %d locks, %d waiters; want 128 torn, 64 locks listed from their words, no waiters",
			s.Torn, len(s.Locks), len(s.Waiters))
	}
}

func TestPlantedFIFODoesNotHang(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	if _, err := r.Mutex("a"); err != nil {
		t.Fatal(err)
	}
	info, stacks, _ := arena.ProcessFiles(dir, r.Self())
	for _, p := range []string{info, stacks} {
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Processes[0].Info != nil {
		t.Error("got process info from a FIFO")
	}
	if _, err := arena.ReadStacks(dir, r.Self()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadStacks of a FIFO: got %v; want a refusal", err)
	}
}

func TestOptionsOutOfRange(t *testing.T) {
	if _, err := Open(runDir(t), Options{MaxProcs: limitProcs + 1}); err == nil || !strings.Contains(err.Error(), "MaxProcs") {
		t.Errorf("Open with MaxProcs past the limit: got %v; want an error naming MaxProcs", err)
	}
	if got := Size(1, 1, 1, math.MaxInt32); got != -1 { // past the limit, and an int on every target
		t.Errorf("Size with math.MaxInt32 events = %d; want -1", got)
	}
	if got, want := Size(1024, 4096, 4096, 65536), int64(5607424+16384*64); got != want { // + the edge table
		t.Errorf("default arena size = %d; want %d", got, want)
	}
}

func TestHugeStackDictionaryIsRefused(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	_, stacks, _ := arena.ProcessFiles(dir, r.Self())
	if err := os.Truncate(stacks, 3<<30); err != nil { // sparse: 3 GiB of zeros
		t.Fatal(err)
	}
	if _, err := arena.ReadStacks(dir, r.Self()); !errors.Is(err, arena.ErrCorrupt) {
		t.Errorf("ReadStacks of a 3 GiB dictionary: got %v; want ErrCorrupt", err)
	}
}

// TestRecordReadsAllocateNothing: record reads run on lock paths (a nested
// acquire reads the holder record of the lock held), where an allocation
// would cost more than the read.
func TestRecordReadsAllocateNothing(t *testing.T) {
	r := openT(t, runDir(t), Options{})
	m, _ := r.Mutex("x")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock()
	reads := map[string]func() bool{
		"holder":  func() bool { _, ok := m.s.Holder.Read(1); return ok },
		"waiter":  func() bool { _, ok := r.a.Waiter(0).Read(1); return ok },
		"process": func() bool { _, ok := r.a.Proc(0).Read(1); return ok },
	}
	for name, read := range reads {
		if n := testing.AllocsPerRun(100, func() {
			if !read() {
				t.Errorf("%s record: no consistent copy", name)
			}
		}); n != 0 {
			t.Errorf("reading a %s record allocated %v times; want 0", name, n)
		}
	}
}
