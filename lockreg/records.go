package lockreg

import (
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
	"github.com/lockwatch/lockwatch/procid"
)

// Holder, waiter and process records are written and read under the
// seqlock protocol of internal/rt/seqlock, whose doc argues why a copy kept
// is never torn. A writer that died mid-write leaves its record odd: readers
// give up after a few tries and report it as torn rather than wait, and the
// next writer starts from the next even value.

// readTries bounds the retries of one record read.
const readTries = 16

// holderCopy is a consistent copy of a holder record.
type holderCopy struct {
	proc, pid          uint32
	start, goid, stack uint64
	since              int64
}

func (h *holderRec) set(procIdx, pid uint32, start uint64, goid int64, stack uint64, since int64) {
	end := h.seq.Begin()
	seqlock.Store32(&h.proc, procIdx)
	seqlock.Store32(&h.pid, pid)
	seqlock.Store64(&h.start, start)
	seqlock.Store64(&h.goid, uint64(goid))
	seqlock.Store64(&h.stack, stack)
	seqlock.StoreInt64(&h.since, since)
	h.seq.End(end)
}

// clear empties the record by storing 0 in pid alone, without the sequence:
// a reader's copy then has either the whole previous record or pid 0, which
// means no record, and both are consistent. (proc and the rest are left; a
// record with pid 0 is never read further.)
func (h *holderRec) clear() {
	seqlock.Store32(&h.pid, 0)
}

// read returns a consistent copy, or ok=false if the record stayed torn
// through tries attempts.
func (h *holderRec) read(tries int) (c holderCopy, ok bool) {
	_, ok = h.seq.Read(tries, func() {
		c = holderCopy{proc: h.proc.Load(), pid: h.pid.Load(), start: h.start.Load(),
			goid: h.goid.Load(), stack: h.stack.Load(), since: h.since.Load()}
	})
	return c, ok
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
	c.seq, ok = w.seq.Read(tries, func() {
		c = waiterCopy{pid: w.pid.Load(), lock: w.lock.Load(), proc: w.proc.Load(), start: w.start.Load(),
			goid: w.goid.Load(), stack: w.stack.Load(), since: w.since.Load()}
	})
	return c, ok
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
			end := w.seq.Begin()
			seqlock.Store32(&w.pid, r.pid)
			seqlock.Store32(&w.proc, r.procIdx+1)
			seqlock.Store64(&w.start, r.self.Start)
			seqlock.Store64(&w.goid, uint64(goid))
			seqlock.Store64(&w.stack, stack)
			seqlock.StoreInt64(&w.since, since)
			seqlock.Store32(&w.lock, lock+1)
			w.seq.End(end)
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
	end := w.seq.Begin()
	seqlock.Store32(&w.lock, 0)
	seqlock.Store32(&w.pid, 0)
	w.seq.End(end)
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
	_, ok = p.seq.Read(tries, func() {
		c = procCopy{state: p.state.Load(), pid: p.pid.Load(), flags: p.flags.Load(), start: p.start.Load(),
			registered: p.registered.Load(), exited: p.exited.Load(), tag: p.tag.Load()}
	})
	return c, ok
}

// write stores c under the entry's seqlock. Called by the slot's owner
// only, with the Registry's pmu held.
func (p *procSlot) write(c procCopy) {
	end := p.seq.Begin()
	seqlock.Store32(&p.state, c.state)
	seqlock.Store32(&p.pid, c.pid)
	seqlock.Store32(&p.flags, c.flags)
	seqlock.Store64(&p.start, c.start)
	seqlock.StoreInt64(&p.registered, c.registered)
	seqlock.StoreInt64(&p.exited, c.exited)
	seqlock.Store64(&p.tag, c.tag)
	p.seq.End(end)
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
