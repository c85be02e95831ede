package inproc

import (
	"slices"
	"time"
)

// readTries bounds the retries of one record read.
const readTries = 16

// A Snapshot is the process's held and awaited drop-in locks at one moment
// (each record read consistently; the set of records is not one instant,
// as nothing is stopped).
type Snapshot struct {
	Taken time.Time
	// Live counts the locks listed before truncation: held, read or
	// awaited. (A lock that nobody holds leaves no record.)
	Live int
	// Locks lists those with a holder, a reader or a waiter, by id; at
	// most the max given to Take (Truncated counts the rest).
	Locks     []Lock
	Truncated int
	// MoreWaiters counts waiters that found no waiter record; MoreHolders
	// holders that found no holder record: they wait or hold, but are not
	// listed.
	MoreWaiters, MoreHolders int64
}

// A Lock is one drop-in lock with its holder, readers and waiters.
type Lock struct {
	// ID is the lock's address: unique among the locks that exist at one
	// time (a lock collected may be followed by another at its address).
	ID   uint64
	Kind Kind
	// Name is the name given with SetName, or "" (then the lock is known
	// by First: its holder's site, else a reader's, else 0).
	Name          string
	First, First2 uintptr

	// Holder is the write holder (Goroutine 0: none). Holder.Since is
	// when it acquired if it waited first; else, with HolderSeen, when a
	// waiter first found it held (it has held at least since then); else
	// 0, not known. HolderStack is its stack when it acquired after
	// waiting, else nil (its site is Holder.PC).
	Holder      Holder
	HolderSeen  bool
	HolderStack []uintptr
	// Readers, by goroutine; MoreReaders counts those without a record.
	Readers     []Reader
	MoreReaders int
	// Waiters, longest first.
	Waiters []Waiter
}

// A Holder holds a lock for writing. Goroutine 0 means no holder.
type Holder struct {
	Goroutine int64
	PC, PC2   uintptr // the return addresses of Lock and of its caller
	Since     int64   // Nanotime's scale; see Lock.Holder
	Slot      uint32  // 1 + the waiter record that keeps its stack, or 0
}

// A Reader holds an RWMutex for reading.
type Reader struct {
	Goroutine int64
	PC, PC2   uintptr // the return addresses of RLock and of its caller
	Since     int64   // 0: not known (a read lock records no time)
}

// A Waiter waits in Lock (Write) or RLock.
type Waiter struct {
	Goroutine int64
	Write     bool
	Since     int64 // Nanotime's scale
	Stack     []uintptr
}

// Take reads the records: every lock held or awaited, at most max of them
// (max <= 0: all). It takes no lock.
func Take(max int) Snapshot { return reading().take(max) }

func (a *arenaT) take(max int) Snapshot {
	s := Snapshot{Taken: time.Now(), MoreWaiters: int64(loadU64(&a.hdr.moreWaiters)),
		MoreHolders: int64(loadU64(&a.hdr.moreHolders))}
	locks := map[uint64]*Lock{}
	get := func(key uint64, kind Kind) *Lock {
		l := locks[key]
		if l == nil {
			l = &Lock{ID: key, Kind: kind}
			locks[key] = l
		}
		if kind != 0 && l.Kind == 0 {
			l.Kind = kind
		}
		return l
	}
	stacks := map[uint32][]uintptr{} // holder stacks, by waiter slot
	for i := range a.waiters {
		c, ok := a.waiters[i].read(i, readTries)
		if !ok {
			continue
		}
		if c.mode&modeHolding != 0 {
			stacks[c.slot] = c.pcs
			continue
		}
		l := get(c.key, 0)
		l.Waiters = append(l.Waiters, Waiter{Goroutine: c.goid, Write: c.mode&modeWrite != 0, Since: c.since, Stack: c.pcs})
	}
	for i := range a.holds {
		c, ok := a.holds[i].read(readTries, a.hdr.mono0)
		if !ok {
			continue
		}
		l := get(uint64(c.key), Kind(c.kind))
		l.Holder = Holder{Goroutine: c.goid, PC: c.pc, PC2: c.pc2, Since: c.since, Slot: c.wslot}
		l.HolderSeen = c.seenOnly
		if c.wslot != 0 {
			l.HolderStack = stacks[c.wslot]
		}
	}
	for i := range a.readers {
		if c, ok := a.readers[i].read(readTries); ok {
			l := get(c.key, KindRWMutex)
			l.Readers = append(l.Readers, Reader{Goroutine: c.goid, PC: c.pc, PC2: c.pc2})
		}
	}
	for _, l := range locks {
		a.finish(l)
		s.Locks = append(s.Locks, *l)
	}
	s.Live = len(s.Locks)
	slices.SortFunc(s.Locks, func(a, b Lock) int { return cmpU64(a.ID, b.ID) })
	if max > 0 && len(s.Locks) > max {
		s.Truncated = len(s.Locks) - max
		s.Locks = s.Locks[:max:max]
	}
	return s
}

// finish names l, gives it a first site and sorts its readers and waiters.
func (a *arenaT) finish(l *Lock) {
	l.Name = a.nameOf(uintptr(l.ID))
	if l.Kind == 0 {
		// Only waiters: a writer's wait says nothing of the kind; a
		// reader's says RWMutex.
		l.Kind = KindMutex
		for _, w := range l.Waiters {
			if !w.Write {
				l.Kind = KindRWMutex
			}
		}
	}
	slices.SortFunc(l.Readers, func(a, b Reader) int { return cmpI64(a.Goroutine, b.Goroutine) })
	// Named after its holder's site, else its reader's of the lowest
	// goroutine id.
	switch {
	case l.Holder.Goroutine != 0:
		l.First, l.First2 = l.Holder.PC, l.Holder.PC2
	case len(l.Readers) > 0:
		l.First, l.First2 = l.Readers[0].PC, l.Readers[0].PC2
	}
	slices.SortFunc(l.Waiters, func(a, b Waiter) int {
		if a.Since != b.Since {
			return cmpI64(a.Since, b.Since)
		}
		return cmpI64(a.Goroutine, b.Goroutine)
	})
}

// Stuck returns the waiters that have waited since before t (Nanotime's
// scale), with their slots, reading only the waiter table.
func Stuck(before int64) []StuckWaiter {
	a := reading()
	var out []StuckWaiter
	for i := range a.waiters {
		c, ok := a.waiters[i].read(i, readTries)
		if !ok || c.mode&modeHolding != 0 || c.since >= before {
			continue
		}
		out = append(out, StuckWaiter{Slot: c.slot, Seq: c.seq, Lock: c.key,
			Waiter: Waiter{Goroutine: c.goid, Write: c.mode&modeWrite != 0, Since: c.since, Stack: c.pcs}})
	}
	return out
}

// A StuckWaiter is a waiter found by Stuck. Slot and Seq identify this one
// wait (a slot's next wait has another Seq), so a hook reports it once.
type StuckWaiter struct {
	Slot uint32
	Seq  uint32
	Lock uint64
	Waiter
}

// Describe returns the lock id as Take would (its holder, name and readers;
// not its waiters), or ok=false if nobody holds or reads it.
func Describe(id uint64) (l Lock, ok bool) {
	a := reading()
	l = Lock{ID: id}
	for i := range a.holds {
		if c, ok := a.holds[i].read(readTries, a.hdr.mono0); ok && uint64(c.key) == id {
			l.Kind = Kind(c.kind)
			l.Holder = Holder{Goroutine: c.goid, PC: c.pc, PC2: c.pc2, Since: c.since, Slot: c.wslot}
			l.HolderSeen = c.seenOnly
		}
	}
	for i := range a.readers {
		if c, ok := a.readers[i].read(readTries); ok && c.key == id {
			l.Kind = KindRWMutex
			l.Readers = append(l.Readers, Reader{Goroutine: c.goid, PC: c.pc, PC2: c.pc2})
		}
	}
	if l.Holder.Goroutine == 0 && len(l.Readers) == 0 {
		return l, false
	}
	a.finish(&l)
	return l, true
}

//go:norace
func loadU64(p *uint64) uint64 { return *p }

//go:norace

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpI64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
