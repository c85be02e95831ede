package lockreg

import "github.com/lockwatch/lockwatch/internal/rt/arena"

// The name index makes finding a lock by name, and creating one, O(1) in
// the number of locks: an open-addressing table in the arena (layout.go,
// the index section) of indexSlots entries, a power of two at least twice
// the lock capacity. Entry i holds a lock index + 1, or 0 when empty; a name
// starts at entry nameHash(name) mod indexSlots and probes linearly.
//
// Writers hold the header's namesLock. A creator writes the slot's name
// and state, publishes the slot by storing nlocks, stores the index entry,
// then stores nindexed. Readers take no lock: an entry is stored after the
// slot's name is complete (sync/atomic stores and loads: the entry's load
// sees the name's stores), so a reader that finds an entry reads a complete
// name. A reader that finds no entry takes namesLock and looks again, so a
// lock whose creator is between publishing the slot and indexing it is not
// created twice.
//
// A creator that dies holding namesLock (the lock is taken over, see
// lockNames) may leave published slots unindexed: [nindexed, nlocks). The
// next holder indexes them first (indexPending); inserting is idempotent, so
// a slot whose entry was stored before its creator died is not indexed
// twice.

// findSlot looks name up in the index, without a lock.
func (r *Registry) findSlot(name string) (uint32, bool) {
	a := r.a
	mask := a.G.IndexSlots - 1
	i := arena.NameHash(name) & mask
	for probes := uint32(0); probes <= mask; probes++ {
		e := a.IndexEntry(i).Load()
		if e == 0 {
			return 0, false
		}
		if idx := e - 1; idx < a.G.MaxLocks {
			s := a.Lock(idx)
			if s.State.Load() == 1 && int(s.NameLen) == len(name) && string(s.Name[:len(name)]) == name {
				return idx, true
			}
		}
		i = (i + 1) & mask
	}
	return 0, false
}

// indexInsert puts the published slot idx into the index, unless it is
// there already. Called holding namesLock.
func (r *Registry) indexInsert(idx uint32) {
	a := r.a
	s := a.Lock(idx)
	name := string(s.Name[:min(int(s.NameLen), arena.MaxNameLen)])
	mask := a.G.IndexSlots - 1
	i := arena.NameHash(name) & mask
	for probes := uint32(0); probes <= mask; probes++ {
		e := a.IndexEntry(i)
		switch e.Load() {
		case idx + 1:
			return
		case 0:
			e.Store(idx + 1)
			return
		}
		i = (i + 1) & mask
	}
	// Unreachable: the index has twice as many entries as there are slots.
}

// indexPending indexes the slots that creators published but did not get
// to index before they died. Called holding namesLock.
func (r *Registry) indexPending() {
	h := r.a.Hdr
	n := h.Nlocks.Load()
	if i := h.Nindexed.Load(); i < n {
		for ; i < n; i++ {
			r.indexInsert(i)
		}
		h.Nindexed.Store(n)
	}
}
