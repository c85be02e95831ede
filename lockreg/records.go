package lockreg

import (
	"runtime"

	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/procid"
)

// The seqlock protocol, for holder and waiter records. A record has one
// writer at a time (the lock's holder; the waiter slot's owner). The writer
// makes seq odd with a sync/atomic store, stores the fields, makes seq even.
// A reader loads seq, loads the fields, loads seq again (all with
// sync/atomic, sequentially consistent in Go's memory model), and keeps the
// copy only if both loads saw the same even value: if the reader's second
// load sees the value stored before (or after) a field store, its field load
// was ordered after (or before) that store, so an unchanged even seq proves
// that no field store happened between the reader's loads. Processes that
// share the mapping are threads sharing memory as far as the CPU is
// concerned, so the argument holds across processes.
//
// The odd store must be an atomic store: a plain store to seq followed by
// another plain store to seq is a dead store the compiler removes (it did,
// and tests now catch it: TestSeqlockNeverTorn). The field stores and the
// final even store may be plain on amd64 (relaxed_amd64.go).
//
// A writer that dies mid-write leaves seq odd. The next writer starts from
// the next even value; readers that find seq odd give up after a few tries
// and report the record as torn rather than wait.

// readTries bounds the retries of one record read.
const readTries = 16

// holderCopy is a consistent copy of a holder record.
type holderCopy struct {
	proc, pid          uint32
	start, goid, stack uint64
	since              int64
}

func (h *holderRec) set(procIdx, pid uint32, start uint64, goid int64, stack uint64, since int64) {
	s := (h.seq.Load() + 1) &^ 1 // even, also after a writer died mid-write
	storeOdd32(&h.seq, s+1)
	store32(&h.proc, procIdx)
	store32(&h.pid, pid)
	store64(&h.start, start)
	store64(&h.goid, uint64(goid))
	store64(&h.stack, stack)
	storeI64(&h.since, since)
	store32(&h.seq, s+2)
}

// clear empties the record by storing 0 in pid alone, without the sequence:
// a reader's copy then has either the whole previous record or pid 0, which
// means no record, and both are consistent. (proc and the rest are left; a
// record with pid 0 is never read further.)
func (h *holderRec) clear() {
	store32(&h.pid, 0)
}

// read returns a consistent copy, or ok=false if the record stayed torn
// through tries attempts.
func (h *holderRec) read(tries int) (c holderCopy, ok bool) {
	for try := 0; try < tries; try++ {
		if try > 0 {
			runtime.Gosched()
		}
		s1 := h.seq.Load()
		if s1&1 == 0 {
			c = holderCopy{proc: h.proc.Load(), pid: h.pid.Load(), start: h.start.Load(),
				goid: h.goid.Load(), stack: h.stack.Load(), since: h.since.Load()}
			if h.seq.Load() == s1 {
				return c, true
			}
		}
	}
	return c, false
}

// waiterCopy is a consistent copy of a waiter record.
type waiterCopy struct {
	pid, lock, proc    uint32
	start, goid, stack uint64
	since              int64
}

// read returns a consistent copy of a waiter record, or ok=false if it
// stayed torn through tries attempts.
func (w *waiterSlot) read(tries int) (c waiterCopy, ok bool) {
	for try := 0; try < tries; try++ {
		if try > 0 {
			runtime.Gosched()
		}
		s1 := w.seq.Load()
		if s1&1 == 0 {
			c = waiterCopy{pid: w.pid.Load(), lock: w.lock.Load(), proc: w.proc.Load(), start: w.start.Load(),
				goid: w.goid.Load(), stack: w.stack.Load(), since: w.since.Load()}
			if w.seq.Load() == s1 {
				return c, true
			}
		}
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
			if owner != 0 {
				// A dead waiter counted itself in its lock's hint.
				if c, ok := w.read(1); ok && c.lock != 0 && c.lock <= r.a.g.maxLocks {
					r.a.lock(c.lock - 1).waiting.Add(-1)
				}
			}
			s := (w.seq.Load() + 1) &^ 1
			w.seq.Store(s + 1)
			w.pid.Store(r.pid)
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
// process proven dead. Only a complete record of that owner counts: right
// after a claim, the slot still holds its previous owner's start time.
func (r *Registry) waiterStale(w *waiterSlot, owner uint32) bool {
	c, ok := w.read(1)
	if !ok || c.pid != owner || c.start == 0 {
		return false
	}
	st, _ := proc.Check(procid.ID{PID: int(owner), Start: c.start})
	return st.Dead()
}

func (r *Registry) releaseWaiter(w *waiterSlot) {
	if w == nil {
		return
	}
	s := (w.seq.Load() + 1) &^ 1
	w.seq.Store(s + 1)
	w.lock.Store(0)
	w.pid.Store(0)
	w.seq.Store(s + 2)
	w.owner.Store(0)
}
