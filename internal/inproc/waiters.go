package inproc

import (
	"sync/atomic"

	"github.com/lockwatch/lockwatch/internal/record"
)

// Waiter records. A goroutine about to block in Lock or RLock claims a slot
// (CAS of its key from 0 to the lock's id, starting at a slot chosen by its
// goroutine id) and writes who, what and since when, and its stack, under
// the Holder protocol's begin/end counters (record/holder.go). A writer that
// then acquires keeps the slot as the holder's stack (mode Holding) until
// Unlock; everything else releases it on acquire.
const (
	waitSlots  = 2048 // a power of two
	waitProbes = 16
)

// Modes of a waiter slot.
const (
	modeWrite   = 1
	modeRead    = 2
	modeHolding = 4 // the slot now keeps the stack of the lock's holder
)

type waitSlot struct {
	key        atomic.Uint64 // the lock's id; 0 when free
	begin, end atomic.Uint32
	goid       atomic.Int64
	since      atomic.Int64
	mode       atomic.Uint32
	n          atomic.Uint32
	pcs        [record.MaxFrames]atomic.Uintptr
	_          [24]byte // 320 bytes: five lines
}

var (
	waiters      [waitSlots]waitSlot
	waitOverflow atomic.Int64 // waiters that found no slot
)

// Wait records that goroutine goid, with stack st, waits since for the lock
// of s (write or read). It returns the slot (1 + its index) or 0 when the
// table had no free slot near the goroutine's place (counted in
// Snapshot.MoreWaiters). Pass the result to Acquired.
func Wait(s *State, write bool, goid int64, since int64, st *record.Stack) uint32 {
	id := s.id.Load()
	h := mix(uint64(goid))
	for p := uint64(0); p < waitProbes; p++ {
		i := (h + p) & (waitSlots - 1)
		w := &waiters[i]
		if w.key.Load() != 0 || !w.key.CompareAndSwap(0, id) {
			continue
		}
		mode := uint32(modeRead)
		if write {
			mode = modeWrite
		}
		v := w.end.Load() + 1
		record.Store32(&w.begin, v)
		record.StoreI64(&w.goid, goid)
		record.StoreI64(&w.since, since)
		record.Store32(&w.mode, mode)
		for k := 0; k < st.N; k++ {
			record.StoreUintptr(&w.pcs[k], st.PCs[k])
		}
		record.Store32(&w.n, uint32(st.N))
		record.Store32(&w.end, v)
		return uint32(i) + 1
	}
	waitOverflow.Add(1)
	return 0
}

// Acquired ends the wait of slot (Wait's result). With hold (a writer's
// acquire), the slot is kept as the holder's stack and returned, for
// Holder.SetSlot and Release at unlock; otherwise it is released and 0 is
// returned.
func Acquired(slot uint32, hold bool) uint32 {
	if slot == 0 {
		waitOverflow.Add(-1)
		return 0
	}
	w := &waiters[slot-1]
	if !hold {
		release(w)
		return 0
	}
	v := w.end.Load() + 1
	record.Store32(&w.begin, v)
	record.Store32(&w.mode, w.mode.Load()|modeHolding)
	record.Store32(&w.end, v)
	return slot
}

// Release frees a slot that Acquired kept for a holder.
func Release(slot uint32) {
	if slot != 0 {
		release(&waiters[slot-1])
	}
}

func release(w *waitSlot) {
	v := w.end.Load() + 1
	record.Store32(&w.begin, v)
	record.StoreI64(&w.goid, 0)
	record.Store32(&w.end, v)
	record.Store64(&w.key, 0)
}

// waitCopy is a consistent copy of a used waiter slot.
type waitCopy struct {
	slot  uint32
	key   uint64
	goid  int64
	since int64
	mode  uint32
	pcs   []uintptr
}

// read copies slot i if it is in use; ok=false when it is free or stayed
// torn.
func (w *waitSlot) read(i int, tries int) (c waitCopy, ok bool) {
	var pcs [record.MaxFrames]uintptr
	for try := 0; try < tries; try++ {
		e := w.end.Load()
		key := w.key.Load()
		if key == 0 {
			return c, false
		}
		c = waitCopy{slot: uint32(i) + 1, key: key, goid: w.goid.Load(), since: w.since.Load(), mode: w.mode.Load()}
		n := min(int(w.n.Load()), record.MaxFrames)
		for k := 0; k < n; k++ {
			pcs[k] = w.pcs[k].Load()
		}
		if w.begin.Load() == e && w.key.Load() == key {
			if c.goid == 0 {
				return c, false
			}
			c.pcs = append([]uintptr(nil), pcs[:n]...)
			return c, true
		}
	}
	return c, false
}
