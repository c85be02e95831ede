package record

import (
	"runtime"
	"sync/atomic"
)

// A Holder is an in-process holder record: who holds a lock (goroutine),
// from where (the caller's PC) and since when (Coarse). Only the lock's
// holder writes it, so writes are ordered by the lock itself; any goroutine
// may read it at any time, without a lock, with Read.
//
// The protocol is a seqlock with its counter split in two words so that no
// store is dead to the compiler (a plain store of seq followed by another is
// one the compiler removes): a write stores begin = v, the fields, end = v;
// a reader loads end, the fields, begin, and keeps its copy only if the two
// are equal. If a field load saw a store of a later write, that write's
// begin store came before it, so the reader's later load of begin sees it
// and differs from the end it loaded first. On amd64 (TSO, and the compiler
// keeps stores in program order) the stores are plain moves; under the race
// detector and elsewhere they are sync/atomic stores (relaxed_*.go).
//
// The zero value is an empty record.
type Holder struct {
	begin, end atomic.Uint32
	goid       atomic.Int64
	pc, pc2    atomic.Uintptr
	since      atomic.Int64
	// slot is 1 + the index of a waiter record that keeps the holder's
	// full stack (a contended acquire), or 0.
	slot atomic.Uint32
}

// Set records a holder: its goroutine, the return address of its Lock
// call (pc) and of the function that made it (pc2, for when pc is in a
// wrapper), since when, and slot, the index + 1 of a record that keeps its
// stack, or 0. Called by the lock's holder only.
func (h *Holder) Set(goid int64, pc, pc2 uintptr, since int64, slot uint32) {
	v := h.end.Load() + 1
	store32(&h.begin, v)
	storeI64(&h.goid, goid)
	storeUintptr(&h.pc, pc)
	storeUintptr(&h.pc2, pc2)
	storeI64(&h.since, since)
	store32(&h.slot, slot)
	store32(&h.end, v)
}

// Clear empties the record and returns the slot Set stored. Called by the
// lock's holder (or whoever unlocks for it) only.
func (h *Holder) Clear() (slot uint32) {
	slot = h.slot.Load()
	v := h.end.Load() + 1
	store32(&h.begin, v)
	storeI64(&h.goid, 0)
	if slot != 0 {
		store32(&h.slot, 0)
	}
	store32(&h.end, v)
	return slot
}

// HolderCopy is a consistent copy of a Holder. Goroutine 0 means no holder.
type HolderCopy struct {
	Goroutine int64
	PC, PC2   uintptr
	Since     int64 // Coarse's scale
	Slot      uint32
}

// Read returns a consistent copy, or ok=false if every one of tries
// attempts raced with a write.
func (h *Holder) Read(tries int) (c HolderCopy, ok bool) {
	for try := 0; try < tries; try++ {
		if try > 0 {
			runtime.Gosched()
		}
		e := h.end.Load()
		c = HolderCopy{Goroutine: h.goid.Load(), PC: h.pc.Load(), PC2: h.pc2.Load(), Since: h.since.Load(), Slot: h.slot.Load()}
		if h.begin.Load() == e {
			return c, true
		}
	}
	return c, false
}

// Goroutine returns the goroutine the record names, 0 if none: one load,
// for a check that the holder is a given goroutine.
func (h *Holder) Goroutine() int64 { return h.goid.Load() }
