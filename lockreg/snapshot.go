package lockreg

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
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

	Processes []Process
	Locks     []Lock
	Waiters   []Waiter
	// Events are the events the rings hold, oldest first: in the order they
	// happened for each lock, by time across locks (see Event.Seq).
	Events []Event

	stacks map[procid.ID]map[uint64][]stackdump.Frame
}

// Capacity is the size of each table of an arena.
type Capacity struct{ Procs, Locks, Waiters, Events int }

// ProcState is a process-table state.
type ProcState string

const (
	ProcRunning ProcState = "running" // registered and not closed: alive, or died without Close
	ProcExited  ProcState = "exited"  // closed its registry: a clean exit
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
	ProcSlot  int // process-table slot, -1 if unknown
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

// Event is one entry of a lock's event ring.
type Event struct {
	// Seq is the event's place in Snapshot.Events, which orders the events
	// of each lock as they happened and events of different locks by time
	// (to within the clock's accuracy, docs/registry-format.md). It is
	// local to the snapshot.
	Seq       uint64
	Kind      EventKind
	PID       int
	Start     uint64
	Goroutine int64
	Lock      int
	LockName  string
	Time      time.Time
	Stack     uint64
}

// ReadSnapshot reads the run in dir without joining it: the arena is mapped
// read-only and nothing is written.
func ReadSnapshot(dir string) (*Snapshot, error) {
	a, err := openReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer a.unmap()
	return a.snapshot(dir)
}

// openReadOnly checks the run directory dir and maps its arena read-only.
func openReadOnly(dir string) (*arena, error) {
	if err := checkRunDir(dir, false); err != nil {
		return nil, err
	}
	return openArena(filepath.Join(dir, ArenaFile), false)
}

// Snapshot reads the registry's run.
func (r *Registry) Snapshot() (*Snapshot, error) {
	if !r.enter() {
		return nil, ErrClosed
	}
	defer r.leave()
	return r.a.snapshot(r.dir)
}

func (a *arena) wall(mono, nowMono int64, now time.Time) time.Time {
	if mono == 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(mono - nowMono))
}

// holderOf turns a holder record read now into a Holder.
func (a *arena) holderOf(h holderCopy) Holder {
	return Holder{PID: int(h.pid), Start: h.start, Goroutine: int64(h.goid), Stack: h.stack,
		Since: a.wall(h.since, nanotime(), time.Now()), ProcSlot: a.procSlotOf(h.proc, procid.ID{PID: int(h.pid), Start: h.start})}
}

func (a *arena) snapshot(dir string) (s *Snapshot, err error) {
	err = a.guarded(func() { s = a.read(dir) })
	return s, err
}

// guarded runs f, which reads the mapping, turning a fault into an error:
// the file can be truncated under us by something outside lockwatch, and
// touching a page past its end raises SIGBUS.
func (a *arena) guarded(f func()) (err error) {
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

// read copies the arena. Called through guarded.
func (a *arena) read(dir string) *Snapshot {
	h := a.hdr
	now, mono := time.Now(), nanotime()
	wall := func(t int64) time.Time { return a.wall(t, mono, now) }
	s := &Snapshot{
		Dir: dir, Taken: now, Format: int(h.version), Created: time.Unix(0, h.created),
		CreatorPID:    int(h.creator),
		Capacity:      Capacity{int(a.g.maxProcs), int(a.g.maxLocks), int(a.g.maxWaiters), int(a.g.maxEvents)},
		EventsDropped: h.dropped.Load(),
	}
	s.Processes = a.processes(dir, wall)
	budget := 4 * int(a.g.maxLocks+a.g.maxWaiters) / 16 // retries for the whole snapshot
	budget = max(budget, 1024)
	n := min(h.nlocks.Load(), a.g.maxLocks)
	names := make([]string, n)
	// readLock reads lock i's word and holder record. The word and the
	// record must agree: read the word on both sides of the record. A
	// reader never waits for a writer: a record that stays mid-write costs
	// a few retries from a budget shared by the whole snapshot, then counts
	// as torn (ok false; the lock is listed from its word alone).
	readLock := func(i uint32) (lk Lock, ok bool) {
		l := a.lock(i)
		lk.Index = int(i)
		var hc holderCopy
		for try := 0; try < 4 && !ok && budget > 0; try++ {
			budget--
			v := l.word.Load()
			hc, ok = l.holder.read(1)
			lk.Word = v
			ok = ok && l.word.Load() == v
		}
		if !ok {
			lk.Word = l.word.Load()
		}
		v := lk.Word
		lk.HolderPID, lk.OwnerDied, lk.HasWaiters = int(v&tidMask), v&ownerDiedBit != 0, v&waitersBit != 0
		if ok && hc.pid != 0 && (hc.pid == v&tidMask || (v&tidMask == 0 && lk.OwnerDied)) {
			hd := Holder{PID: int(hc.pid), Start: hc.start, Goroutine: int64(hc.goid), Stack: hc.stack,
				Since: wall(hc.since), ProcSlot: a.procSlotOf(hc.proc, procid.ID{PID: int(hc.pid), Start: hc.start})}
			lk.Holder = &hd
		}
		return lk, ok
	}
	for i := uint32(0); i < n; i++ {
		l := a.lock(i)
		if l.state.Load() != 1 {
			continue
		}
		names[i] = string(l.name[:min(int(l.nameLen), maxNameLen)])
		lk, ok := readLock(i)
		lk.Name = names[i]
		if !ok {
			s.Torn++
		}
		s.Locks = append(s.Locks, lk)
	}
	lockName := func(idx uint32) string {
		if idx > 0 && idx <= n {
			return names[idx-1]
		}
		return ""
	}
	for i := uint32(0); i < a.g.maxWaiters; i++ {
		w := a.waiter(i)
		if w.owner.Load() == 0 {
			continue
		}
		var c waiterCopy
		ok := false
		for try := 0; try < 4 && !ok && budget > 0; try++ {
			budget--
			c, ok = w.read(1)
		}
		switch {
		case !ok:
			s.Torn++
		case c.pid != 0 && c.lock != 0 && c.lock <= n:
			s.Waiters = append(s.Waiters, Waiter{Slot: int(i), PID: int(c.pid), Start: c.start, Goroutine: int64(c.goid),
				Stack: c.stack, Lock: int(c.lock) - 1, LockName: lockName(c.lock), Since: wall(c.since)})
			s.Locks[c.lock-1].Waiting++
		}
	}
	raw, total := a.readEvents(n)
	s.EventsTotal = total
	s.Events = make([]Event, 0, len(raw))
	for k, e := range raw {
		s.Events = append(s.Events, Event{Seq: uint64(k), Kind: e.kind, PID: int(e.pid), Start: e.start,
			Goroutine: int64(e.goid), Lock: int(e.lock), LockName: names[e.lock], Time: wall(e.time), Stack: e.stack})
	}
	s.Waiters = a.recheckSelfWaits(s, readLock, &budget)
	sort.Slice(s.Waiters, func(i, j int) bool {
		if !s.Waiters[i].Since.Equal(s.Waiters[j].Since) {
			return s.Waiters[i].Since.Before(s.Waiters[j].Since)
		}
		return s.Waiters[i].Slot < s.Waiters[j].Slot
	})
	return s
}

// processes reads the process table. Called through guarded.
func (a *arena) processes(dir string, wall func(int64) time.Time) []Process {
	var out []Process
	for i := uint32(0); i < a.g.maxProcs; i++ {
		p := a.proc(i)
		if p.owner.Load() == 0 {
			break // slots are claimed in order; the rest were never used
		}
		c, ok := p.read(4)
		if !ok || c.state == procFree {
			continue // being claimed, or its writer died claiming it
		}
		pr := Process{Slot: int(i), PID: int(c.pid), Start: c.start, State: ProcRunning,
			Robust: c.flags&procRobust != 0, Registered: wall(c.registered)}
		if c.state == procExited {
			pr.State, pr.Exited = ProcExited, wall(c.exited)
		}
		pr.Info, _ = ReadProcessInfo(dir, pr.Identity())
		out = append(out, pr)
	}
	return out
}

// ReadProcesses reads only the process table of the run in dir: a cheap
// look at which processes a run has, for listing many runs.
func ReadProcesses(dir string) (ps []Process, err error) {
	a, err := openReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer a.unmap()
	now, mono := time.Now(), nanotime()
	err = a.guarded(func() { ps = a.processes(dir, func(t int64) time.Time { return a.wall(t, mono, now) }) })
	return ps, err
}

// ReadProcessInfo reads the info file a process wrote in the run directory.
func ReadProcessInfo(dir string, id procid.ID) (*ProcessInfo, error) {
	f, err := openPrivate(filepath.Join(dir, processFile(id, "json")))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pi ProcessInfo
	if err := json.NewDecoder(f).Decode(&pi); err != nil {
		return nil, fmt.Errorf("lockreg: %s: %w", f.Name(), err)
	}
	return &pi, nil
}

// ReadStacks reads the stack dictionary of a process of the run in dir.
// Stacks stay readable after the process died.
func ReadStacks(dir string, id procid.ID) (map[uint64][]stackdump.Frame, error) {
	path := filepath.Join(dir, processFile(id, "stacks"))
	f, err := openPrivate(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if fi.Size() > stackdump.MaxDictSize {
		return nil, &ArenaError{Path: path, Kind: ErrCorrupt,
			Detail: fmt.Sprintf("stack dictionary of %d bytes, more than the %d a process writes", fi.Size(), stackdump.MaxDictSize),
			Hint:   "the run directory has been tampered with"}
	}
	return stackdump.DecodeDict(f)
}

// openPrivate opens a file of the run for reading, without following a
// symbolic link and without blocking (a FIFO planted in the run directory
// must not hang a reader), and refuses anything but a regular file private
// to this user.
func openPrivate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &ArenaError{Path: path, Kind: ErrCorrupt, Detail: "not a regular file", Hint: "the run directory has been tampered with"}
	}
	if err == nil {
		err = checkPrivate(path, fi, 0o600)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Stack returns the frames of stack id recorded by the process id, reading
// (once) that process's dictionary. ok is false if the stack is unknown.
func (s *Snapshot) Stack(id procid.ID, stack uint64) (frames []stackdump.Frame, ok bool) {
	if stack == 0 {
		return nil, false
	}
	if s.stacks == nil {
		s.stacks = make(map[procid.ID]map[uint64][]stackdump.Frame)
	}
	d, seen := s.stacks[id]
	if !seen {
		d, _ = ReadStacks(s.Dir, id) // a partial dictionary is still useful
		s.stacks[id] = d
	}
	frames, ok = d[stack]
	return frames, ok
}

// Process returns the process-table entry of id, if any.
func (s *Snapshot) Process(id procid.ID) (Process, bool) {
	for _, p := range s.Processes {
		if p.PID == id.PID && (id.Start == 0 || p.Start == id.Start) {
			return p, true
		}
	}
	return Process{}, false
}

// recheckSelfWaits re-reads every lock whose holder is also recorded waiting
// for it. Locks are read before waiter records, so a goroutine that released
// a lock and began to wait for it again between the two reads would show as
// holding the lock and waiting for it: deadlocked on itself, to a reader. For
// each such pair it reads the lock, the waiter record and the lock word and
// holder sequence again, and keeps the pair only if the lock did not change
// across the waiter read (a goroutine really waiting for a lock it holds); a
// waiter record gone or changed meanwhile is dropped, with the new lock
// state. A lock that changes under every try cannot be held by a goroutine
// waiting for it: it is listed from its word alone (no holder record), as a
// record being written is. Called through guarded.
func (a *arena) recheckSelfWaits(s *Snapshot, readLock func(uint32) (Lock, bool), budget *int) []Waiter {
	out := s.Waiters[:0]
	for _, w := range s.Waiters {
		lk := &s.Locks[w.Lock]
		if h := lk.Holder; h == nil || h.PID != w.PID || h.Goroutine != w.Goroutine {
			out = append(out, w)
			continue
		}
		l, ws := a.lock(uint32(w.Lock)), a.waiter(uint32(w.Slot))
		keep, settled := true, false
		for try := 0; try < 16 && *budget > 0 && !settled; try++ {
			*budget--
			v, hs := l.word.Load(), l.holder.seq.Load()
			nl, ok := readLock(uint32(w.Lock))
			c, wok := ws.read(1)
			if !ok || l.word.Load() != v || l.holder.seq.Load() != hs {
				continue
			}
			nl.Name, nl.Waiting = lk.Name, lk.Waiting
			*lk = nl
			if !wok || c.pid != uint32(w.PID) || c.goid != uint64(w.Goroutine) || c.lock != uint32(w.Lock)+1 {
				keep = false
				lk.Waiting--
			}
			settled = true
		}
		if !settled {
			lk.Holder = nil
		}
		if keep {
			out = append(out, w)
		}
	}
	return out
}
