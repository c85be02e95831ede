package lockreg

import (
	"runtime"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
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
	seq                uint32 // the record's sequence when read: any claim or release changes it
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
				goid: w.goid.Load(), stack: w.stack.Load(), since: w.since.Load(), seq: s1}
			if w.seq.Load() == s1 {
				return c, true
			}
		}
	}
	return c, false
}

// claimWaiter takes a free waiter slot and fills it. It returns nil when the
// table is full even after reclaiming slots of dead processes; the wait goes
// on unrecorded (the lock's waiting count counts it instead, see lockSlow).
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

// procCopy is a consistent copy of a process-table entry's fields.
type procCopy struct {
	state, pid, flags  uint32
	start              uint64
	registered, exited int64
	tag                uint64
}

// read returns a consistent copy of a process-table entry, or ok=false if
// it stayed torn through tries attempts (its writer died mid-write, or is
// writing).
func (p *procSlot) read(tries int) (c procCopy, ok bool) {
	for try := 0; try < tries; try++ {
		if try > 0 {
			runtime.Gosched()
		}
		s1 := p.seq.Load()
		if s1&1 == 0 {
			c = procCopy{state: p.state.Load(), pid: p.pid.Load(), flags: p.flags.Load(), start: p.start.Load(),
				registered: p.registered.Load(), exited: p.exited.Load(), tag: p.tag.Load()}
			if p.seq.Load() == s1 {
				return c, true
			}
		}
	}
	return c, false
}

// write stores c under the entry's seqlock. Called by the slot's owner
// only, with the Registry's pmu held. These stores are sync/atomic ones: the
// process table is written at Open and Close, never on a lock's fast path.
func (p *procSlot) write(c procCopy) {
	s := (p.seq.Load() + 1) &^ 1
	p.seq.Store(s + 1)
	p.state.Store(c.state)
	p.pid.Store(c.pid)
	p.flags.Store(c.flags)
	p.start.Store(c.start)
	p.registered.Store(c.registered)
	p.exited.Store(c.exited)
	p.tag.Store(c.tag)
	p.seq.Store(s + 2)
}

// procSlotOf returns the process-table slot that a record's hint (slot + 1)
// names, if that slot still holds the process id; -1 otherwise. Slots are
// reused, so a record's slot number alone never names a process.
func (a *arena) procSlotOf(hint uint32, id procid.ID) int {
	if hint == 0 || hint > a.g.maxProcs {
		return -1
	}
	c, ok := a.proc(hint - 1).read(4)
	if !ok || c.state == procFree || int(c.pid) != id.PID || c.start != id.Start {
		return -1
	}
	return int(hint - 1)
}

// slotDead reports whether the process that claimed the slot p with owner
// value o is proven dead. When the slot's fields are that claimant's (their
// tag is o), its pid and start time are checked: gone, a zombie, or the pid
// now another process's. Otherwise the claimant has not written them yet, or
// died writing them, and only its pid is known: it is dead if no process has
// that pid or the one that has it is a zombie (while the claimant lives, its
// pid is its own). A live process, however slow, is never found dead: a
// check that fails for another reason (permissions) proves nothing.
func slotDead(p *procSlot, o uint64) bool {
	pid := int(uint32(o))
	if c, ok := p.read(readTries); ok && c.tag == o && c.state != procFree {
		st, _ := proc.Check(procid.ID{PID: pid, Start: c.start})
		return st.Dead()
	}
	st, _ := proc.Check(procid.ID{PID: pid})
	return st == proc.Gone || st == proc.Zombie
}
