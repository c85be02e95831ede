package inproc

import (
	"slices"
	"time"

	"github.com/lockwatch/lockwatch/internal/record"
)

// readTries bounds the retries of one record read.
const readTries = 16

// A Snapshot is the table's held and awaited locks at one moment (each
// record read consistently; the set of records is not one instant, as
// nothing is stopped).
type Snapshot struct {
	Taken time.Time
	// Live counts the locks in the table (locked at least once, not yet
	// collected).
	Live int
	// Locks lists those with a holder, a reader or a waiter, by id; at
	// most the max given to Take (Truncated counts the rest).
	Locks     []Lock
	Truncated int
	// MoreWaiters counts waiters that found no waiter slot: they wait, but
	// are not listed.
	MoreWaiters int64
}

// A Lock is one drop-in lock with its holder, readers and waiters.
type Lock struct {
	ID   uint64
	Kind Kind
	// Name is the name given with SetName, or "" (then the lock is known
	// by First, the caller's PC at its first Lock).
	Name          string
	First, First2 uintptr

	// Holder is the write holder (Goroutine 0: none). HolderStack is its
	// stack when it acquired after waiting, else nil (its site is
	// Holder.PC).
	Holder      record.HolderCopy
	HolderStack []uintptr
	// Readers, by goroutine; MoreReaders counts those without a record.
	Readers     []Reader
	MoreReaders int
	// Waiters, longest first.
	Waiters []Waiter
}

// A Reader holds an RWMutex for reading.
type Reader struct {
	Goroutine int64
	PC, PC2   uintptr // the return addresses of RLock and of its caller
	Since     int64   // record.Coarse's scale
}

// A Waiter waits in Lock (Write) or RLock.
type Waiter struct {
	Goroutine int64
	Write     bool
	Since     int64 // record.Coarse's scale
	Stack     []uintptr
}

// Take reads the table: every lock held or awaited, at most max of them
// (max <= 0: all). It takes no lock that an acquire takes, and holds each
// table shard's lock only to copy its entry pointers.
func Take(max int) Snapshot {
	s := Snapshot{Taken: time.Now(), MoreWaiters: waitOverflow.Load()}
	waits := map[uint64][]Waiter{}
	holding := map[uint64]map[int64][]uintptr{} // by lock, by holder goroutine
	for i := range waiters {
		c, ok := waiters[i].read(i, readTries)
		if !ok {
			continue
		}
		if c.mode&modeHolding != 0 {
			if holding[c.key] == nil {
				holding[c.key] = map[int64][]uintptr{}
			}
			holding[c.key][c.goid] = c.pcs
			continue
		}
		waits[c.key] = append(waits[c.key], Waiter{Goroutine: c.goid, Write: c.mode&modeWrite != 0, Since: c.since, Stack: c.pcs})
	}
	reads := map[uint64][]Reader{}
	for i := range readers {
		if c, ok := readers[i].read(readTries); ok {
			reads[c.key] = append(reads[c.key], Reader{Goroutine: c.goid, PC: c.pc, PC2: c.pc2, Since: c.since})
		}
	}

	// Each shard's lock is held while its entries are looked at (a few
	// tens of microseconds at 100,000 locks): it delays only first Locks
	// in that shard, never an acquire.
	live := make(map[uint64]bool, len(reads))
	for i := range table.shards {
		sh := &table.shards[i]
		sh.mu.Lock()
		s.Live += len(sh.m)
		for _, e := range sh.m {
			st := e.w.Value()
			if st == nil {
				continue
			}
			if len(reads[e.id]) > 0 {
				live[e.id] = true
			}
			h, _ := st.Holder.Read(readTries)
			over := int(st.over.Load())
			if h.Goroutine == 0 && over <= 0 && len(reads[e.id]) == 0 && len(waits[e.id]) == 0 {
				continue
			}
			l := Lock{ID: e.id, Kind: e.kind, First: e.first, First2: e.first2, Holder: h, Readers: reads[e.id],
				MoreReaders: max0(over), Waiters: waits[e.id]}
			if n := e.name.Load(); n != nil {
				l.Name = *n
			}
			if h.Goroutine != 0 {
				l.HolderStack = holding[e.id][h.Goroutine]
			}
			s.Locks = append(s.Locks, l)
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(s.Locks, func(a, b Lock) int { return cmpU64(a.ID, b.ID) })
	if max > 0 && len(s.Locks) > max {
		s.Truncated = len(s.Locks) - max
		s.Locks = s.Locks[:max:max]
	}
	for i := range s.Locks {
		l := &s.Locks[i]
		slices.SortFunc(l.Readers, func(a, b Reader) int { return cmpI64(a.Goroutine, b.Goroutine) })
		slices.SortFunc(l.Waiters, func(a, b Waiter) int {
			if a.Since != b.Since {
				return cmpI64(a.Since, b.Since)
			}
			return cmpI64(a.Goroutine, b.Goroutine)
		})
	}
	// Reader slots of locks that are gone (collected while read-locked,
	// so never read-unlocked): free them. No RUnlock can come for them.
	for i := range readers {
		r := &readers[i]
		if k := r.key.Load(); k != 0 && !live[k] && len(reads[k]) > 0 && lookupGone(k) {
			if r.key.CompareAndSwap(k, 0) {
				reads[k] = reads[k][:0]
			}
		}
	}
	return s
}

// lookupGone reports whether lock id is no longer in the table or its lock
// was collected.
func lookupGone(id uint64) bool {
	e := lookup(id)
	return e == nil || e.w.Value() == nil
}

// Stuck returns the waiters that have waited since before t (Coarse's
// scale), with their slots, reading only the waiter table.
func Stuck(before int64) []StuckWaiter {
	var out []StuckWaiter
	for i := range waiters {
		c, ok := waiters[i].read(i, readTries)
		if !ok || c.mode&modeHolding != 0 || c.since >= before {
			continue
		}
		out = append(out, StuckWaiter{Slot: c.slot, Seq: waiters[i].end.Load(), Lock: c.key,
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
// not its waiters), or ok=false if it is gone. It reads the reader table,
// not every lock.
func Describe(id uint64) (l Lock, ok bool) {
	e := lookup(id)
	if e == nil {
		return l, false
	}
	st := e.w.Value()
	if st == nil {
		return l, false
	}
	h, _ := st.Holder.Read(readTries)
	l = Lock{ID: id, Kind: e.kind, First: e.first, First2: e.first2, Holder: h, MoreReaders: max0(int(st.over.Load()))}
	if n := e.name.Load(); n != nil {
		l.Name = *n
	}
	for i := range readers {
		if c, ok := readers[i].read(readTries); ok && c.key == id {
			l.Readers = append(l.Readers, Reader{Goroutine: c.goid, PC: c.pc, PC2: c.pc2, Since: c.since})
		}
	}
	slices.SortFunc(l.Readers, func(a, b Reader) int { return cmpI64(a.Goroutine, b.Goroutine) })
	return l, true
}

func max0(n int) int { return max(n, 0) }

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
