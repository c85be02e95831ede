package arena

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/jsonbudget"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/stackdict"
	"github.com/lockwatch/lockwatch/procid"
)

// A Snapshot is a copy of a run's arena as typed values, taken without any
// lock: every record is read under its sequence counter, and a record that
// stays mid-write through many tries (its writer died writing it) is counted
// in Torn and left out rather than waited for. Taking one never blocks,
// whatever the processes of the run are doing.
type Snapshot struct {
	Dir        string
	Taken      time.Time
	Format     int
	Created    time.Time
	CreatorPID int
	Capacity   Capacity
	// EventsTotal counts the events ever recorded (each lock's holder
	// events modulo 2^32); each lock's ring keeps its last
	// Capacity.Events/Capacity.Locks.
	EventsTotal   uint64
	EventsDropped uint64
	// Torn counts records read without a consistent copy: a lock's holder
	// record that changed (or whose word changed) under every try, or whose
	// writer died mid-write; such a lock is listed from its word alone.
	Torn int
	// Counts are the records the arena holds. Where a count is more than
	// the snapshot carries, the rest were left out to keep the reading
	// bounded (see ReadOptions); Notes says so.
	Counts Counts

	Processes []Process // in slot order
	// Former are the processes that a kept holder or waiter record names
	// but that the process table no longer lists: a later process took
	// the slot, which it does only from a process proved dead. Their info
	// files stay in the run directory while a record names them, so their
	// roles are still known. By pid; Slot -1, State ProcSlotTaken.
	Former  []Process
	Locks   []Lock   // in index order
	Waiters []Waiter // oldest first
	// Events are the newest events the rings hold, oldest first: in the
	// order they happened for each lock, by time across locks (see
	// Event.Seq).
	Events []Event
	Orders Orders // the lock-order edge table (order.go)

	opts ReadOptions

	// Stack dictionaries, read lazily through the run directory's handle
	// and within a byte budget for the whole snapshot.
	rd         *RunDir
	dicts      map[procid.ID]*stackdict.Index
	dictBudget int64
	dictOver   int // stacks not looked up: the budget was spent
	dictErrs   int // dictionaries that could not be read (other than missing)
	infoOver   int // info files not read: too large, or past the budget
}

// Counts are the records of an arena.
type Counts struct {
	Processes int // process-table entries in use
	Running   int // of them, not closed (alive, or died without closing)
	Locks     int // named locks
	Held      int // of them, held or marked OWNER_DIED
	Waiters   int // waiter records
	Events    int // events in the ring: at most its capacity
}

// Capacity is the size of each table of an arena.
type Capacity struct{ Procs, Locks, Waiters, Events int }

// ProcState is a process-table state.
type ProcState string

const (
	ProcRunning ProcState = "running" // registered and not closed: alive, or died without Close
	ProcExited  ProcState = "exited"  // closed its registry: a clean exit
	// ProcSlotTaken: a former process (Snapshot.Former), whose slot a
	// later process took: it had ended.
	ProcSlotTaken ProcState = "slot taken"
)

// Process is a process-table entry.
type Process struct {
	Slot       int
	PID        int
	Start      uint64
	State      ProcState
	Robust     bool // the kernel watches its locks
	Registered time.Time
	Exited     time.Time    // zero unless State is ProcExited
	Info       *ProcessInfo // nil if its info file is unreadable
}

// Identity returns the process's pid and start time.
func (p Process) Identity() procid.ID { return procid.ID{PID: p.PID, Start: p.Start} }

// Lock is a named lock's state.
type Lock struct {
	Index int
	Name  string
	Word  uint32
	// HolderPID is the pid in the lock word: the holder, set atomically with
	// the acquisition. 0 when the lock is free, or when the kernel (or a
	// waiter with proof) marked the holder dead.
	HolderPID  int
	OwnerDied  bool // FUTEX_OWNER_DIED: the holder died holding it
	HasWaiters bool // FUTEX_WAITERS
	Waiting    int  // waiter records naming it (of live or dead waiters)
	// Token is the lock's fencing counter: the token of its latest acquire
	// (the holder's while it is held), or the lock's starting value if it
	// was never taken.
	Token uint64
	// Holder is the holder's record: after OwnerDied, the record of the
	// holder that died. Nil when the lock is free, or while the record is
	// being written (the word's pid then says who holds it).
	Holder *Holder
}

// Held reports whether the lock is held, by a live or dead holder.
func (l Lock) Held() bool { return l.HolderPID != 0 || l.OwnerDied }

// Holder is a holder record.
type Holder struct {
	PID       int
	Start     uint64 // the holder process's start time, see procid.ID
	Goroutine int64
	Stack     uint64 // stack-dictionary id of the acquire; 0 if not recorded
	Since     time.Time
	ProcSlot  int    // process-table slot, -1 if unknown
	Token     uint64 // the hold's fencing token
}

// Identity returns the holder process's identity.
func (h Holder) Identity() procid.ID { return procid.ID{PID: h.PID, Start: h.Start} }

// Waiter is a waiter record.
type Waiter struct {
	Slot      int
	PID       int
	Start     uint64
	Goroutine int64
	Stack     uint64
	Lock      int
	LockName  string
	Since     time.Time
}

// Identity returns the waiting process's identity.
func (w Waiter) Identity() procid.ID { return procid.ID{PID: w.PID, Start: w.Start} }

// Event is one entry of the event ring.
type Event struct {
	Seq       uint64
	Kind      EventKind
	PID       int
	Start     uint64
	Goroutine int64
	Lock      int
	LockName  string
	Time      time.Time
	Stack     uint64
	Token     uint64 // the fencing token of the hold the event is about; 0 if none
}

// ReadOptions bound what ReadSnapshotWith copies of a run, so that reading
// any arena, whatever capacities it was made with and whatever a damaged or
// hostile process wrote in it, takes bounded time and memory. What is left
// out is counted in Snapshot.Counts and said in Snapshot.Notes. The zero
// value gives the defaults.
type ReadOptions struct {
	// Events is how many of the ring's most recent events are read.
	// Default DefaultReadEvents.
	Events int
	// Processes, Locks and Waiters bound the records carried in full.
	// Processes still running are kept before closed ones; held locks, and
	// locks with waiters, before free ones; waiters in slot order, of kept
	// locks only. Defaults DefaultReadProcesses, DefaultReadLocks,
	// DefaultReadWaiters.
	Processes, Locks, Waiters int
	// MoreEvents, if set, ends the note that says the events were cut:
	// how the user asks for more (the CLI: "use --events N for more").
	MoreEvents string
}

// Default read limits: the default capacities of an arena (Options), so
// that a run made with the defaults is always read whole. A snapshot at
// these limits takes some 10 MiB.
const (
	DefaultReadEvents    = 1 << 16
	DefaultReadProcesses = 1 << 10
	DefaultReadLocks     = 1 << 12
	DefaultReadWaiters   = 1 << 12
)

// Byte limits of the files a snapshot reads beside the arena. A process
// writes an info file of a few hundred bytes (its arguments) and a
// dictionary of a few KiB per distinct acquire stack.
const (
	// MaxInfoSize bounds one info file; a larger one is not read.
	MaxInfoSize = 1 << 20
	// infoBudget bounds the info files one snapshot reads, together.
	infoBudget = 16 << 20
	// dictBudget bounds the bytes of stack dictionaries one snapshot
	// reads, indexing and decoding together.
	dictBudget = 64 << 20
)

func (o ReadOptions) withDefaults() ReadOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Events, DefaultReadEvents)
	def(&o.Processes, DefaultReadProcesses)
	def(&o.Locks, DefaultReadLocks)
	def(&o.Waiters, DefaultReadWaiters)
	return o
}

// ReadSnapshot reads the run in dir without joining it, with the default
// ReadOptions: the arena is mapped read-only and nothing is written.
func ReadSnapshot(dir string) (*Snapshot, error) { return ReadSnapshotWith(dir, ReadOptions{}) }

// ReadSnapshotWith reads the run in dir within the limits o. The run
// directory is opened once; the arena, info files and stack dictionaries
// are opened relative to it (see RunDir). The snapshot keeps the directory
// open for Stack until it is garbage collected.
func ReadSnapshotWith(dir string, o ReadOptions) (*Snapshot, error) {
	rd, a, err := openReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer a.Unmap()
	s, err := a.Snapshot(rd, o)
	if err != nil {
		rd.Close()
		return nil, err
	}
	// The snapshot owns the handle (Stack reads through it) and holds it
	// until it is collected.
	runtime.SetFinalizer(s, func(s *Snapshot) { s.rd.Close() })
	return s, nil
}

// openReadOnly opens the run directory dir and maps its arena read-only.
func openReadOnly(dir string) (*RunDir, *Arena, error) {
	rd, err := OpenDir(dir, false)
	if err != nil {
		return nil, nil, err
	}
	a, err := OpenArena(rd, false, false)
	if err != nil {
		rd.Close()
		return nil, nil, err
	}
	return rd, a, nil
}

func (a *Arena) wall(mono, nowMono int64, now time.Time) time.Time {
	if mono == 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(mono - nowMono))
}

// holderOf turns a holder record read now into a Holder.
func (a *Arena) HolderOf(h HolderCopy) Holder {
	return Holder{PID: int(h.Pid), Start: h.Start, Goroutine: int64(h.Goid), Stack: h.Stack,
		Since: a.wall(h.since, record.Nanotime(), time.Now()), ProcSlot: a.procSlotOf(h.proc, procid.ID{PID: int(h.Pid), Start: h.Start}),
		Token: h.Token}
}

func (a *Arena) Snapshot(rd *RunDir, o ReadOptions) (s *Snapshot, err error) {
	err = a.guarded(func() {
		s = a.read(rd, o.withDefaults())
		a.readOrders(s, time.Now(), record.Nanotime()) // order.go
	})
	return s, err
}

// guarded runs f, which reads the mapping, turning a fault into an error:
// the file can be truncated under us by something outside lockwatch, and
// touching a page past its end raises SIGBUS.
func (a *Arena) guarded(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &ArenaError{Path: a.path, Kind: ErrCorrupt, Detail: fmt.Sprintf("fault while reading: %v", p),
				Hint: "the arena file was truncated or replaced; start a new run"}
		}
	}()
	f()
	return nil
}

// releaseEvery is how many bytes of a section a reader reads before it
// drops them from its resident set (arena.release).
const releaseEvery = 8 << 20

// lockStep is how many lock records make up about releaseEvery bytes (192
// does not divide it).
const lockStep = releaseEvery / lockSize

// keeper keeps at most max items, preferring those marked first-class:
// second-class ones make room for first-class ones that come later.
type keeper[T any] struct {
	max           int
	first, second []T
}

// wants reports whether add would keep an item of this class.
func (k *keeper[T]) wants(firstClass bool) bool {
	return len(k.first)+len(k.second) < k.max || firstClass && len(k.second) > 0
}

func (k *keeper[T]) add(v T, firstClass bool) {
	switch {
	case len(k.first)+len(k.second) < k.max:
	case firstClass && len(k.second) > 0:
		k.second = k.second[:len(k.second)-1]
	default:
		return
	}
	if firstClass {
		k.first = append(k.first, v)
	} else {
		k.second = append(k.second, v)
	}
}

// read copies the arena within the limits o. Called through guarded.
func (a *Arena) read(rd *RunDir, o ReadOptions) *Snapshot {
	h := a.Hdr
	now, mono := time.Now(), record.Nanotime()
	wall := func(t int64) time.Time { return a.wall(t, mono, now) }
	s := &Snapshot{
		Dir: rd.path, Taken: now, Format: int(h.version), Created: time.Unix(0, h.created),
		CreatorPID:    int(h.creator),
		Capacity:      Capacity{int(a.G.MaxProcs), int(a.G.MaxLocks), int(a.G.MaxWaiters), int(a.G.maxEvents)},
		EventsDropped: h.Dropped.Load(),
		opts:          o, rd: rd, dictBudget: dictBudget,
	}
	// Processes: running ones first.
	var procs keeper[Process]
	procs.max = o.Processes
	a.eachProcess(wall, func(p Process) bool {
		s.Counts.Processes++
		if p.State == ProcRunning {
			s.Counts.Running++
		}
		if procs.wants(p.State == ProcRunning) {
			procs.add(p, p.State == ProcRunning)
		}
		return true
	})
	s.Processes = append(procs.first, procs.second...)
	sort.Slice(s.Processes, func(i, j int) bool { return s.Processes[i].Slot < s.Processes[j].Slot })
	info := int64(infoBudget)
	for i := range s.Processes {
		p := &s.Processes[i]
		var err error
		p.Info, err = readInfo(rd, p.Identity(), &info)
		if p.Info == nil && (info <= 0 || errors.Is(err, errInfoValues)) {
			s.infoOver++
		}
	}

	// Locks: held ones, and those with waiters, first.
	// Retries for the whole snapshot: each record's first try is free.
	budget := 4 * int(a.G.MaxLocks+a.G.MaxWaiters) / 16
	budget = max(budget, 1024)
	n := min(h.Nlocks.Load(), a.G.MaxLocks)
	var locks keeper[Lock]
	locks.max = o.Locks
	for i := uint32(0); i < n; i++ {
		if i%lockStep == 0 && i > 0 {
			a.release(a.G.locksOff+uint64(i-lockStep)*lockSize, a.G.locksOff+uint64(i)*lockSize)
		}
		l := a.Lock(i)
		if l.State.Load() != 1 {
			continue
		}
		s.Counts.Locks++
		lk := Lock{Index: int(i)}
		// The word and the record must agree: read the word on both sides
		// of the record. A reader never waits for a writer: a record that
		// stays mid-write costs a few retries from a budget shared by the
		// whole snapshot, then counts as torn.
		var hc HolderCopy
		ok := false
		for try := 0; try < 4 && !ok && (try == 0 || budget > 0); try++ {
			if try > 0 {
				budget--
			}
			v := l.Word.Load()
			hc, ok = l.Holder.Read(1)
			lk.Word = v
			ok = ok && l.Word.Load() == v
		}
		lk.Token = hc.Token
		if !ok {
			lk.Word, lk.Token = l.Word.Load(), l.Holder.Token.Load()
			s.Torn++
		}
		v := lk.Word
		lk.HolderPID, lk.OwnerDied, lk.HasWaiters = int(v&TidMask), v&OwnerDiedBit != 0, v&WaitersBit != 0
		if lk.Held() {
			s.Counts.Held++
		}
		if interesting := lk.Held() || lk.HasWaiters || l.Waiting.Load() > 0; locks.wants(interesting) {
			if ok && hc.Pid != 0 && (hc.Pid == v&TidMask || (v&TidMask == 0 && lk.OwnerDied)) {
				hd := Holder{PID: int(hc.Pid), Start: hc.Start, Goroutine: int64(hc.Goid), Stack: hc.Stack,
					Since: wall(hc.since), ProcSlot: a.procSlotOf(hc.proc, procid.ID{PID: int(hc.Pid), Start: hc.Start}), Token: hc.Token}
				lk.Holder = &hd
			}
			lk.Name = a.lockName(i)
			locks.add(lk, interesting)
		}
	}
	a.release(a.G.locksOff, a.G.waitersOff)
	s.Locks = append(locks.first, locks.second...)
	sort.Slice(s.Locks, func(i, j int) bool { return s.Locks[i].Index < s.Locks[j].Index })
	kept := make(map[uint32]int, len(s.Locks)) // lock index -> index in s.Locks
	for i, l := range s.Locks {
		kept[uint32(l.Index)] = i
	}

	// Waiters, of kept locks, in slot order; waiterSeq holds each kept
	// record's sequence as read, for the self-wait check below.
	var waiterSeq []uint32
	for i := uint32(0); i < a.G.MaxWaiters; i++ {
		if i%(releaseEvery/waiterSize) == 0 && i > 0 {
			a.release(a.G.waitersOff+uint64(i)*waiterSize-releaseEvery, a.G.waitersOff+uint64(i)*waiterSize)
		}
		w := a.Waiter(i)
		if w.Owner.Load() == 0 {
			continue
		}
		var c waiterCopy
		ok := false
		for try := 0; try < 4 && !ok && (try == 0 || budget > 0); try++ {
			if try > 0 {
				budget--
			}
			c, ok = w.Read(1)
		}
		switch {
		case !ok:
			s.Torn++
		case c.Pid != 0 && c.lock != 0 && c.lock <= n:
			s.Counts.Waiters++
			li, isKept := kept[c.lock-1]
			if !isKept {
				continue
			}
			s.Locks[li].Waiting++
			if len(s.Waiters) < o.Waiters {
				s.Waiters = append(s.Waiters, Waiter{Slot: int(i), PID: int(c.Pid), Start: c.Start, Goroutine: int64(c.goid),
					Stack: c.stack, Lock: int(c.lock) - 1, LockName: s.Locks[li].Name, Since: wall(c.since)})
				waiterSeq = append(waiterSeq, c.seq)
			}
		}
	}
	a.release(a.G.waitersOff, a.G.eventsOff)

	// A goroutine recorded both holding a lock and waiting for it is either
	// deadlocked on itself or a view torn across time, since the holder
	// records were read before the waiters (an acquiring waiter leaves the
	// waiters before it writes the holder record, so one moment never shows
	// both). Read such a lock's holder again, after the waiter was read, and
	// then the waiter record once more:
	//   - the holder now names another goroutine, or none: the first read was
	//     stale (the goroutine released the lock, then began to wait again):
	//     the lock is listed without a holder record (a new holder could be
	//     one of the waiters read before, and naming it would make the same
	//     false pair);
	//   - it names the goroutine, and the waiter record's sequence has not
	//     moved since it was first read: the record was there before and
	//     after the holder read (every claim and release of a waiter slot
	//     moves its sequence, and a waiter that acquires releases its record
	//     before it writes the holder record), so the goroutine held the lock
	//     while it waited for it: a real self-deadlock;
	//   - it names the goroutine, and the sequence moved: the goroutine got
	//     the lock after its waiter record was read, and the waiter is
	//     dropped.
	// Times are not compared: an uncontended acquire is stamped by the
	// coarse clock and a wait by the precise one, so a later acquire can
	// carry an earlier time than the wait it followed.
	waiters := s.Waiters[:0]
	for k, w := range s.Waiters {
		lk := &s.Locks[kept[uint32(w.Lock)]]
		if lk.Holder == nil || lk.Holder.PID != w.PID || lk.Holder.Start != w.Start || lk.Holder.Goroutine != w.Goroutine {
			waiters = append(waiters, w)
			continue
		}
		l := a.Lock(uint32(w.Lock))
		v := l.Word.Load()
		hc, ok := l.Holder.Read(ReadTries)
		switch {
		case !ok || v != l.Word.Load() || hc.Pid == 0 || hc.Pid != v&TidMask:
			lk.Holder = nil // no consistent record now: better none than a wrong one
			waiters = append(waiters, w)
		case int(hc.Pid) != w.PID || hc.Start != w.Start || int64(hc.Goid) != w.Goroutine:
			// The lock changed hands since: its new holder may be among the
			// waiters already read, so it is not named either.
			lk.Holder = nil
			waiters = append(waiters, w)
		default:
			lk.Holder.Since, lk.Holder.Stack, lk.Holder.Token, lk.Word, lk.Token = wall(hc.since), hc.Stack, hc.Token, v, hc.Token
			if a.Waiter(uint32(w.Slot)).Seq.Load() == waiterSeq[k] {
				waiters = append(waiters, w) // held it while it waited for it: deadlocked on itself
				continue
			}
			lk.Waiting--
			s.Counts.Waiters--
		}
	}
	s.Waiters = waiters
	a.readFormer(rd, s, &info)

	// The newest o.Events events of the rings.
	raw, total, held := a.readEvents(n, o.Events)
	s.EventsTotal, s.Counts.Events = total, held
	names := make(map[uint32]string)
	nameOf := func(lock uint32) string {
		if li, ok := kept[lock]; ok {
			return s.Locks[li].Name
		}
		name, ok := names[lock]
		if !ok {
			name = a.lockName(lock)
			names[lock] = name
		}
		return name
	}
	s.Events = make([]Event, 0, len(raw))
	for k, e := range raw {
		s.Events = append(s.Events, Event{Seq: uint64(k), Kind: e.kind, PID: int(e.pid), Start: e.start,
			Goroutine: int64(e.goid), Lock: int(e.lock), LockName: nameOf(e.lock), Time: wall(e.time), Stack: e.stack, Token: e.token})
	}
	a.release(0, a.G.Total)
	sort.Slice(s.Waiters, func(i, j int) bool {
		if !s.Waiters[i].Since.Equal(s.Waiters[j].Since) {
			return s.Waiters[i].Since.Before(s.Waiters[j].Since)
		}
		return s.Waiters[i].Slot < s.Waiters[j].Slot
	})
	return s
}

// readFormer lists in s.Former the processes that the kept holder and
// waiter records name and the process table does not: a second look at
// the table, for these few only, tells a process whose slot was taken from
// one left out of s.Processes by ReadOptions.Processes. Their info files
// are read within the snapshot's budget, as the table's processes' are.
// Called through guarded.
func (a *Arena) readFormer(rd *RunDir, s *Snapshot, info *int64) {
	want := make(map[procid.ID]bool)
	for _, l := range s.Locks {
		if l.Holder != nil {
			want[l.Holder.Identity()] = true
		}
	}
	for _, w := range s.Waiters {
		want[w.Identity()] = true
	}
	for _, p := range s.Processes {
		delete(want, p.Identity())
	}
	if len(want) == 0 {
		return
	}
	a.eachProcess(func(int64) time.Time { return time.Time{} }, func(p Process) bool {
		delete(want, p.Identity())
		return len(want) > 0
	})
	for id := range want {
		p := Process{Slot: -1, PID: id.PID, Start: id.Start, State: ProcSlotTaken}
		var err error
		p.Info, err = readInfo(rd, id, info)
		switch {
		case p.Info != nil:
			p.Robust = p.Info.Robust
		case *info <= 0 || errors.Is(err, errInfoValues):
			s.infoOver++
		}
		s.Former = append(s.Former, p)
	}
	sort.Slice(s.Former, func(i, j int) bool {
		if s.Former[i].PID != s.Former[j].PID {
			return s.Former[i].PID < s.Former[j].PID
		}
		return s.Former[i].Start < s.Former[j].Start
	})
}

// lockName copies the name of lock slot i.
func (a *Arena) lockName(i uint32) string {
	l := a.Lock(i)
	return string(l.Name[:min(int(l.NameLen), MaxNameLen)])
}

// eachProcess calls each with the process-table entries in slot order,
// without their info, until it returns false. Called through guarded.
func (a *Arena) eachProcess(wall func(int64) time.Time, each func(Process) bool) {
	defer a.release(a.G.procsOff, a.G.locksOff)
	for i := uint32(0); i < a.G.MaxProcs; i++ {
		if i%(releaseEvery/procSize) == 0 && i > 0 {
			a.release(a.G.procsOff+uint64(i)*procSize-releaseEvery, a.G.procsOff+uint64(i)*procSize)
		}
		p := a.Proc(i)
		if p.Owner.Load() == 0 {
			break // slots are claimed in order; the rest were never used
		}
		c, ok := p.Read(4)
		if !ok || c.State == SlotFree {
			continue // being claimed, or its writer died claiming it
		}
		pr := Process{Slot: int(i), PID: int(c.Pid), Start: c.Start, State: ProcRunning,
			Robust: c.Flags&ProcRobust != 0, Registered: wall(c.Registered)}
		if c.State == SlotExited {
			pr.State, pr.Exited = ProcExited, wall(c.Exited)
		}
		if !each(pr) {
			return
		}
	}
}

// ScanProcesses calls each with the entries of the process table of the run
// in dir, in slot order and without their info files, until each returns
// false: a cheap look at which processes a run has, for listing many runs,
// in constant memory whatever the table's size.
func ScanProcesses(dir string, each func(Process) bool) error {
	rd, a, err := openReadOnly(dir)
	if err != nil {
		return err
	}
	defer rd.Close()
	defer a.Unmap()
	now, mono := time.Now(), record.Nanotime()
	return a.guarded(func() { a.eachProcess(func(t int64) time.Time { return a.wall(t, mono, now) }, each) })
}

// ReadProcesses reads the process table of the run in dir, without the
// info files, as a snapshot keeps it: at most DefaultReadProcesses entries,
// running ones first, in slot order. ScanProcesses streams all of them.
func ReadProcesses(dir string) ([]Process, error) {
	var k keeper[Process]
	k.max = DefaultReadProcesses
	err := ScanProcesses(dir, func(p Process) bool {
		if k.wants(p.State == ProcRunning) {
			k.add(p, p.State == ProcRunning)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	out := append(k.first, k.second...)
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// ReadProcessInfo reads the info file a process wrote in the run directory.
func ReadProcessInfo(dir string, id procid.ID) (*ProcessInfo, error) {
	rd, err := OpenDir(dir, false)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return rd.ProcessInfo(id)
}

// ProcessInfo reads the info file the process id wrote in the run
// directory, of at most MaxInfoSize bytes.
func (d *RunDir) ProcessInfo(id procid.ID) (*ProcessInfo, error) {
	budget := int64(MaxInfoSize)
	return readInfo(d, id, &budget)
}

// maxInfoValues bounds the JSON values of an info file decoded: a process
// writes a few fields and its arguments.
const maxInfoValues = 1 << 14

var errInfoValues = errors.New("info file of too many JSON values")

// readInfo reads a process's info file, of at most MaxInfoSize bytes and
// at most *budget, which it decreases by the file's size.
func readInfo(rd *RunDir, id procid.ID, budget *int64) (*ProcessInfo, error) {
	f, err := rd.openPrivate(ProcessFile(id, "json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxInfoSize || fi.Size() > *budget {
		*budget = 0
		return nil, &ArenaError{Path: f.Name(), Kind: ErrCorrupt,
			Detail: fmt.Sprintf("info file of %d bytes, more than the %d a reader reads", fi.Size(), min(int64(MaxInfoSize), *budget)),
			Hint:   "the run directory has been tampered with"}
	}
	*budget -= fi.Size()
	b := make([]byte, fi.Size()) // at most MaxInfoSize: checked above
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	b = b[:n]
	// What decoding builds: an argument list of empty strings takes 16
	// bytes of string header for each 3 bytes of file.
	if n := jsonbudget.Values(b); n > maxInfoValues {
		return nil, fmt.Errorf("lockreg: %s: %w: %d, more than the %d a reader decodes", f.Name(), errInfoValues, n, maxInfoValues)
	}
	var pi ProcessInfo
	if err := json.Unmarshal(b, &pi); err != nil {
		return nil, fmt.Errorf("lockreg: %s: %w", f.Name(), err)
	}
	return &pi, nil
}

// ReadStacks reads the stack dictionary of a process of the run in dir,
// whole (stackdict.Decode's limits apply). Stacks stay readable after
// the process died. Snapshot.Stack reads only the stacks it is asked for.
func ReadStacks(dir string, id procid.ID) (map[uint64][]record.Frame, error) {
	rd, err := OpenDir(dir, false)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	f, err := openDict(rd, id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return stackdict.Decode(f)
}

// openDict opens a process's stack dictionary, refusing one larger than a
// process writes.
func openDict(rd *RunDir, id procid.ID) (*os.File, error) {
	f, err := rd.openPrivate(ProcessFile(id, "stacks"))
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if fi.Size() > stackdict.MaxSize {
		f.Close()
		return nil, &ArenaError{Path: f.Name(), Kind: ErrCorrupt,
			Detail: fmt.Sprintf("stack dictionary of %d bytes, more than the %d a process writes", fi.Size(), stackdict.MaxSize),
			Hint:   "the run directory has been tampered with"}
	}
	return f, nil
}

// dictFile reads a process's dictionary through the run directory's handle,
// opening it for each read: a snapshot holds no descriptor per dictionary.
type dictFile struct {
	rd *RunDir
	id procid.ID
}

func (d dictFile) ReadAt(b []byte, off int64) (int, error) {
	f, err := openDict(d.rd, d.id)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(b, off)
}

// Stack returns the frames of stack id recorded by the process id, from
// that process's dictionary. ok is false if the stack is unknown, or if the
// snapshot has spent its budget for reading dictionaries (Notes says so).
func (s *Snapshot) Stack(id procid.ID, stack uint64) (frames []record.Frame, ok bool) {
	if stack == 0 || s.rd == nil {
		return nil, false
	}
	if s.dicts == nil {
		s.dicts = make(map[procid.ID]*stackdict.Index)
	}
	x, seen := s.dicts[id]
	if !seen {
		if s.dictBudget <= 0 {
			s.dictOver++
			return nil, false
		}
		f, err := openDict(s.rd, id)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.dictErrs++
			}
			s.dicts[id] = nil
			return nil, false
		}
		f.Close()
		x = stackdict.IndexOf(dictFile{s.rd, id}, s.dictBudget)
		s.dictBudget -= x.Scanned
		s.dicts[id] = x
	}
	if x == nil {
		return nil, false
	}
	if need := x.Size(stack); need > s.dictBudget {
		s.dictOver++
		return nil, false
	} else {
		s.dictBudget -= need
	}
	return x.Lookup(stack)
}

// Process returns the process-table entry of id, if the snapshot carries
// it, else its entry among the former processes (Former).
func (s *Snapshot) Process(id procid.ID) (Process, bool) {
	for _, ps := range [][]Process{s.Processes, s.Former} {
		for _, p := range ps {
			if p.PID == id.PID && (id.Start == 0 || p.Start == id.Start) {
				return p, true
			}
		}
	}
	return Process{}, false
}

// Notes says, one line each, what the snapshot left out to stay within its
// limits: events past ReadOptions.Events, processes, locks and waiters past
// their limits, info files past their byte limits, and (StackNotes) stack
// dictionaries past theirs: call it after the Stack calls, which can add to
// it, or call StackNotes then.
func (s *Snapshot) Notes() []string {
	var out []string
	if s.Counts.Events > s.opts.Events {
		note := fmt.Sprintf("showing the last %s of %s events", commas(s.opts.Events), commas(s.Counts.Events))
		if s.opts.MoreEvents != "" {
			note += "; " + s.opts.MoreEvents
		}
		out = append(out, note)
	}
	if s.Counts.Processes > len(s.Processes) {
		out = append(out, fmt.Sprintf("showing %s of %s processes (%s running, kept first)",
			commas(len(s.Processes)), commas(s.Counts.Processes), commas(s.Counts.Running)))
	}
	if s.Counts.Locks > len(s.Locks) {
		out = append(out, fmt.Sprintf("showing %s of %s locks (%s held; held locks and locks with waiters are kept first)",
			commas(len(s.Locks)), commas(s.Counts.Locks), commas(s.Counts.Held)))
	}
	if s.Counts.Waiters > len(s.Waiters) {
		out = append(out, fmt.Sprintf("showing %s of %s waiters", commas(len(s.Waiters)), commas(s.Counts.Waiters)))
	}
	if s.infoOver > 0 {
		out = append(out, fmt.Sprintf("%s info files were not read: larger than %d KiB each or %d MiB in all, or of more than %s JSON values", commas(s.infoOver), MaxInfoSize>>10, infoBudget>>20, commas(maxInfoValues)))
	}
	return append(out, s.StackNotes()...)
}

// StackNotes says what Stack could not read of the stack dictionaries
// (lines too long or unreadable, dictionaries past the byte budget), so far.
func (s *Snapshot) StackNotes() []string {
	var out []string
	skipped := 0
	for _, x := range s.dicts {
		if x != nil {
			skipped += x.Skipped
		}
	}
	if skipped > 0 {
		out = append(out, fmt.Sprintf("%s lines of stack dictionaries were skipped: unreadable, longer than %d KiB, or past %s stacks a dictionary",
			commas(skipped), stackdict.MaxLine>>10, commas(stackdict.MaxStacks)))
	}
	if s.dictOver > 0 {
		out = append(out, fmt.Sprintf("%s stacks were not looked up: the stack dictionaries read passed %d MiB", commas(s.dictOver), dictBudget>>20))
	}
	if s.dictErrs > 0 {
		out = append(out, fmt.Sprintf("%s stack dictionaries could not be read (larger than %d MiB, not regular files, or not private)", commas(s.dictErrs), stackdict.MaxSize>>20))
	}
	return out
}

// commas writes n with thousands separators: 16777216 -> "16,777,216".
func commas(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
