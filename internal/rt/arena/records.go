package arena

import (
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
	"github.com/lockwatch/lockwatch/procid"
)

// readTries bounds the retries of one record read.
const ReadTries = 16

// holderCopy is a consistent copy of a holder record.
type HolderCopy struct {
	proc, Pid          uint32
	Start, Goid, Stack uint64
	since              int64
	Token              uint64 // the lock's fencing counter when the copy was made: the holder's token
}

// Set writes the record of a new hold, with its fencing token: the lock's
// counter plus one, which it returns. Called holding the lock, once per
// acquire.
func (h *holderRec) Set(procIdx, pid uint32, start uint64, goid int64, stack uint64, since int64) (token uint64) {
	token = h.Token.Load() + 1
	end := h.Seq.Begin()
	seqlock.Store64(&h.Token, token)
	seqlock.Store32(&h.proc, procIdx)
	seqlock.Store32(&h.Pid, pid)
	seqlock.Store64(&h.start, start)
	seqlock.Store64(&h.Goid, uint64(goid))
	seqlock.Store64(&h.Stack, stack)
	seqlock.StoreInt64(&h.since, since)
	h.Seq.End(end)
	return token
}

// NextToken gives an acquire that writes no record (lockreg's NoRecord) its
// token: the counter plus one, stored. Called holding the lock.
func (h *holderRec) NextToken() uint64 {
	token := h.Token.Load() + 1
	seqlock.Store64(&h.Token, token)
	return token
}

// clear empties the record by storing 0 in pid alone, without the sequence:
// a reader's copy then has either the whole previous record or pid 0, which
// means no record, and both are consistent. (proc and the rest are left; a
// record with pid 0 is never read further.)
func (h *holderRec) Clear() {
	seqlock.Store32(&h.Pid, 0)
}

// read returns a consistent copy, or ok=false if the record stayed torn
// through tries attempts.
func (h *holderRec) Read(tries int) (c HolderCopy, ok bool) {
	_, ok = h.Seq.Read(tries, func() {
		c = HolderCopy{proc: h.proc.Load(), Pid: h.Pid.Load(), Start: h.start.Load(),
			Goid: h.Goid.Load(), Stack: h.Stack.Load(), since: h.since.Load(), Token: h.Token.Load()}
	})
	return c, ok
}

// waiterCopy is a consistent copy of a waiter record.
type waiterCopy struct {
	Pid, lock, proc    uint32
	Start, goid, stack uint64
	since              int64
	seq                uint32 // the record's sequence when read: any claim or release changes it
}

// read returns a consistent copy of a waiter record, or ok=false if it
// stayed torn through tries attempts.
func (w *WaiterSlot) Read(tries int) (c waiterCopy, ok bool) {
	c.seq, ok = w.Seq.Read(tries, func() {
		c = waiterCopy{Pid: w.Pid.Load(), lock: w.Lock.Load(), proc: w.Proc.Load(), Start: w.Start.Load(),
			goid: w.Goid.Load(), stack: w.Stack.Load(), since: w.Since.Load()}
	})
	return c, ok
}

// procCopy is a consistent copy of a process-table entry's fields.
type ProcCopy struct {
	State, Pid, Flags  uint32
	Start              uint64
	Registered, Exited int64
	Tag                uint64
}

// read returns a consistent copy of a process-table entry, or ok=false if
// it stayed torn through tries attempts (its writer died mid-write, or is
// writing).
func (p *procSlot) Read(tries int) (c ProcCopy, ok bool) {
	_, ok = p.seq.Read(tries, func() {
		c = ProcCopy{State: p.state.Load(), Pid: p.pid.Load(), Flags: p.flags.Load(), Start: p.start.Load(),
			Registered: p.registered.Load(), Exited: p.exited.Load(), Tag: p.tag.Load()}
	})
	return c, ok
}

// write stores c under the entry's seqlock. Called by the slot's owner
// only, with the Registry's pmu held.
func (p *procSlot) Write(c ProcCopy) {
	end := p.seq.Begin()
	seqlock.Store32(&p.state, c.State)
	seqlock.Store32(&p.pid, c.Pid)
	seqlock.Store32(&p.flags, c.Flags)
	seqlock.Store64(&p.start, c.Start)
	seqlock.StoreInt64(&p.registered, c.Registered)
	seqlock.StoreInt64(&p.exited, c.Exited)
	seqlock.Store64(&p.tag, c.Tag)
	p.seq.End(end)
}

// procSlotOf returns the process-table slot that a record's hint (slot + 1)
// names, if that slot still holds the process id; -1 otherwise. Slots are
// reused, so a record's slot number alone never names a process.
func (a *Arena) procSlotOf(hint uint32, id procid.ID) int {
	if hint == 0 || hint > a.G.MaxProcs {
		return -1
	}
	c, ok := a.Proc(hint - 1).Read(4)
	if !ok || c.State == SlotFree || int(c.Pid) != id.PID || c.Start != id.Start {
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
func SlotDead(p *procSlot, o uint64) bool {
	pid := int(uint32(o))
	if c, ok := p.Read(ReadTries); ok && c.Tag == o && c.State != SlotFree {
		st, _ := proc.Check(procid.ID{PID: pid, Start: c.Start})
		return st.Dead()
	}
	st, _ := proc.Check(procid.ID{PID: pid})
	return st == proc.Gone || st == proc.Zombie
}
