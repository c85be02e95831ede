package lockreg

import (
	"runtime"

	"github.com/lockwatch/lockwatch/internal/proc"
)

// The seqlock protocol, for holder and waiter records. A record has one
// writer at a time (the lock's holder; the waiter slot's owner). The writer
// makes seq odd, stores the fields, makes seq even. A reader loads seq,
// loads the fields, loads seq again, and keeps the copy only if both loads
// saw the same even value. All accesses are sync/atomic operations, which
// are sequentially consistent in Go's memory model: if the reader's second
// load sees the value the writer stored before (or after) a field store, the
// reader's field load was ordered after (or before) it, so an unchanged even
// seq proves that no field store happened between the reader's loads.
// Processes sharing the mapping are threads sharing memory as far as the
// CPU is concerned, so the same argument holds across processes.
//
// A writer that dies mid-write leaves seq odd. The next writer starts from
// the next even value; readers that find seq odd for long give up and say
// the record is torn rather than wait.

const readTries = 100

// holderCopy is a consistent copy of a holder record.
type holderCopy struct {
	proc, pid          uint32
	start, goid, stack uint64
	since              int64
}

func (h *holderRec) set(procIdx, pid uint32, start uint64, goid int64, stack uint64, since int64) {
	s := (h.seq.Load() + 1) &^ 1 // even, also after a writer died mid-write
	store32(&h.seq, s+1)
	store32(&h.proc, procIdx)
	store32(&h.pid, pid)
	store64(&h.start, start)
	store64(&h.goid, uint64(goid))
	store64(&h.stack, stack)
	storeI64(&h.since, since)
	store32(&h.seq, s+2)
}

func (h *holderRec) clear() {
	s := (h.seq.Load() + 1) &^ 1
	store32(&h.seq, s+1)
	store32(&h.pid, 0)
	store32(&h.proc, 0)
	store32(&h.seq, s+2)
}

// read returns a consistent copy, or ok=false if the record stayed torn.
func (h *holderRec) read() (c holderCopy, ok bool) {
	for try := 0; try < readTries; try++ {
		s1 := h.seq.Load()
		if s1&1 == 0 {
			c = holderCopy{proc: h.proc.Load(), pid: h.pid.Load(), start: h.start.Load(),
				goid: h.goid.Load(), stack: h.stack.Load(), since: h.since.Load()}
			if h.seq.Load() == s1 {
				return c, true
			}
		}
		runtime.Gosched()
	}
	return c, false
}

// claimWaiter takes a free waiter slot and fills it. It returns nil when the
// table is full even after reclaiming slots of dead processes; the wait goes
// on unrecorded (the lock's waiting count still counts it).
func (r *Registry) claimWaiter(lock uint32, goid int64, stack uint64, since int64) *waiterSlot {
	n := r.a.g.maxWaiters
	first := uint32((uint64(goid)*0x9e3779b1 + uint64(r.pid)) % uint64(n))
	for pass := 0; pass < 2; pass++ {
		for k := uint32(0); k < n; k++ {
			w := r.a.waiter((first + k) % n)
			owner := w.owner.Load()
			if owner != 0 {
				if pass == 0 || !r.waiterStale(w, owner) {
					continue
				}
			}
			if !w.owner.CompareAndSwap(owner, r.pid) {
				continue
			}
			s := (w.seq.Load() + 1) &^ 1
			w.seq.Store(s + 1)
			w.proc.Store(r.procIdx + 1)
			w.start.Store(r.self.Start)
			w.goid.Store(uint64(goid))
			w.stack.Store(stack)
			w.since.Store(since)
			w.lock.Store(lock + 1)
			w.seq.Store(s + 2)
			return w
		}
	}
	return nil
}

// waiterStale reports whether the waiter slot owned by pid belongs to a
// process proven dead.
func (r *Registry) waiterStale(w *waiterSlot, owner uint32) bool {
	st, _ := proc.Check(proc.Identity{PID: int(owner), Start: w.start.Load()})
	return st.Dead()
}

func (r *Registry) releaseWaiter(w *waiterSlot) {
	if w == nil {
		return
	}
	s := (w.seq.Load() + 1) &^ 1
	w.seq.Store(s + 1)
	w.lock.Store(0)
	w.seq.Store(s + 2)
	w.owner.Store(0)
}
