package inproc

import (
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// Waiter records. A goroutine about to block in Lock or RLock claims a slot
// (CAS of its key from 0 to the lock's address, starting at a slot chosen
// by its goroutine id) and writes who, what and since when, and its stack,
// under its sequence word. A writer that then acquires keeps the slot
// as the holder's stack (its holder record names it) until Unlock;
// everything else releases it on acquire.

const maxFrames = record.MaxFrames

// Modes of a waiter slot.
const (
	modeWrite   = 1
	modeRead    = 2
	modeHolding = 4 // the slot now keeps the stack of the lock's holder
)

type waitSlot struct {
	key   uint64 // the lock's address; 0 when free
	seq   seqlock.Seq32
	_     uint32
	goid  int64
	since int64
	mode  uint32
	n     uint32
	pcs   [maxFrames]uintptr
	_     [24]byte // 320 bytes: five lines
}

// Wait records that goroutine goid, with stack st, waits since for the lock
// at addr (write or read). It returns the slot (1 + its index) or 0 when
// the table had no free slot near the goroutine's place (counted). Pass the
// result to Acquired.
//
//go:norace
func Wait(addr uintptr, write bool, goid int64, since int64, st *record.Stack) uint32 {
	a := arena()
	h := mix(uint64(goid))
	for p := uint64(0); p < waitProbes; p++ {
		i := (h + p) & (waitSlots - 1)
		w := &a.waiters[i]
		if w.key != 0 || !seqlock.CAS64(&w.key, 0, uint64(addr)) {
			continue
		}
		mode := uint32(modeRead)
		if write {
			mode = modeWrite
		}
		end := w.seq.Begin()
		w.goid = goid
		w.since = since
		w.mode = mode
		// Loops, not copy: the runtime's copy tells the race detector.
		n := min(st.N, maxFrames)
		for k := 0; k < n; k++ {
			w.pcs[k] = st.PCs[k]
		}
		w.n = uint32(n)
		w.seq.End(end)
		return uint32(i) + 1
	}
	seqlock.Add64(&a.hdr.moreWaiters, 1)
	return 0
}

// Acquired ends the wait of slot (Wait's result). With hold (a writer's
// acquire), the slot is kept as the holder's stack and returned, for Hold;
// otherwise it is released and 0 is returned.
//
//go:norace
func Acquired(slot uint32, hold bool) uint32 {
	a := reading()
	if slot == 0 {
		seqlock.Add64(&a.hdr.moreWaiters, ^uint64(0))
		return 0
	}
	w := &a.waiters[slot-1]
	if !hold {
		release(a, w)
		return 0
	}
	end := w.seq.Begin()
	w.mode |= modeHolding
	w.seq.End(end)
	return slot
}

// release empties w (goroutine 0, under the sequence), then frees it.
//
//go:norace
func release(a *arenaT, w *waitSlot) {
	end := w.seq.Begin()
	w.goid = 0
	w.seq.End(end)
	seqlock.StoreFence()
	w.key = 0
}

// waitCopy is a consistent copy of a used waiter slot.
type waitCopy struct {
	slot  uint32
	key   uint64
	goid  int64
	since int64
	mode  uint32
	pcs   []uintptr
	seq   uint32 // the record's sequence: each wait in the slot has its own
}

// read copies slot i if it is in use; ok=false when it is free or stayed
// torn.
//
//go:norace
func (w *waitSlot) read(i int, tries int) (c waitCopy, ok bool) {
	if w.key == 0 {
		return c, false
	}
	var pcs [maxFrames]uintptr
	n := 0
	seq, ok := w.seq.Read(tries, func() {
		c = waitCopy{slot: uint32(i) + 1, key: w.key, goid: w.goid, since: w.since, mode: w.mode}
		n = min(int(w.n), maxFrames)
		for k := 0; k < n; k++ {
			pcs[k] = w.pcs[k]
		}
	})
	if !ok || c.key == 0 || c.goid == 0 {
		return c, false
	}
	c.pcs = append([]uintptr(nil), pcs[:n]...)
	c.seq = seq
	return c, true
}
