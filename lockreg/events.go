package lockreg

import (
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// The event rings. Each lock has its own ring (layout.go, ringHdr), so that
// processes working on different locks never write the same cache line:
// with one ring for the whole run, the shared ticket's line moved between
// the CPUs on every acquire, and eight processes on eight locks ran no
// faster than two on one (docs/registry-format.md has the figures).
//
// A lock's ring has two halves. The holder ring takes the events only a
// holder writes (acquire, release, recovered): the lock word already makes
// holders take turns, so they need no atomic claim; a plain head in the lock's
// first cache line, which the acquire owns at that moment anyway, says which
// slot is next. The waiter ring takes the events of goroutines that do not
// hold the lock (wait, stuck, timeout, and owner-died, which a waiter writes
// for the dead holder), which may come at once: a ticket by fetch-add and a
// CAS claim of the slot, as before. A holder event stores the waiter ticket
// it saw, so that a reader can interleave the two halves in the order they
// happened.

// record appends an event of this process to lock's ring, about the hold
// with the fencing token token (0: none). Events of a holder kind must be
// recorded holding the lock.
func (r *Registry) record(kind arena.EventKind, lock uint32, goid int64, stack uint64, t int64, token uint64) {
	if arena.HolderKind(kind) {
		a := r.a
		r.appendHeld(a.Lock(lock), a.Ring(lock), a.RingSlot(lock, 0), a.G.RingSlots/2-1, kind, goid, stack, t, token)
		return
	}
	r.recordAs(kind, lock, r.pid, r.self.Start, goid, stack, t, token)
}

// appendHeld appends a holder event to the holder ring of lock slot s,
// whose ring header is ring, first holder slot slot0, and holder slots
// mask+1 (a Mutex keeps these, so that its acquire and release compute
// none of them). Only the holder writes the holder ring, so it writes the
// slot under its sequence number without a claim (internal/rt/seqlock): odd
// 2t+1, the fields, even 2t+2, then the head. A holder that dies mid-write
// leaves the slot odd and the head at t; the next holder writes the same
// slot again, from the odd value.
func (r *Registry) appendHeld(s *arena.LockSlot, ring *arena.RingHdr, slot0 *arena.EventSlot, mask uint32, kind arena.EventKind, goid int64, stack uint64, t int64, token uint64) {
	h := s.Holder.Ring.Load()
	e := (*arena.EventSlot)(unsafe.Add(unsafe.Pointer(slot0), uintptr(h&mask)*arena.EventSize))
	seq := 2*uint64(h) + 1
	e.Seq.BeginAt(seq)
	seqlock.Store32(&e.What, arena.EventWhat(kind, uint32(ring.WaitTicket.Load())))
	seqlock.Store32(&e.Pid, r.pid)
	seqlock.Store64(&e.Start, r.self.Start)
	seqlock.Store64(&e.Goid, uint64(goid))
	seqlock.StoreInt64(&e.Time, t)
	seqlock.Store64(&e.Stack, stack)
	seqlock.Store64(&e.Token, token)
	e.Seq.End(seq + 1)
	seqlock.Store32(&s.Holder.Ring, h+1)
}

// recordAs appends a waiter event on behalf of the process pid with start
// time start: the dead holder, for EventOwnerDied, with its hold's token.
//
// The ticket t from the ring's head says which slot to use; the writer
// claims the slot with a CAS from an even value below 2t+1 (a complete event
// of an earlier lap, or 0) to 2t+1. So two writers can never share a slot: a
// writer that finds the slot odd (being written, or left mid-write by a
// writer that died) or already at a later ticket gives up and counts its
// event as dropped rather than tear another. A ticket taken by a writer that
// died before claiming its slot costs nothing: the next lap claims the slot
// from the older even value.
func (r *Registry) recordAs(kind arena.EventKind, lock, pid uint32, start uint64, goid int64, stack uint64, t int64, token uint64) {
	a := r.a
	half := uint64(a.G.RingSlots / 2)
	tk := a.Ring(lock).WaitTicket.Add(1) - 1
	e := a.RingSlot(lock, uint32(half+tk&(half-1)))
	cur := e.Seq.Load()
	if cur&1 != 0 || cur >= 2*tk+1 || !e.Seq.Claim(cur, 2*tk+1) {
		a.Hdr.Dropped.Add(1)
		return
	}
	seqlock.Store32(&e.What, arena.EventWhat(kind, 0))
	seqlock.Store32(&e.Pid, pid)
	seqlock.Store64(&e.Start, start)
	seqlock.Store64(&e.Goid, uint64(goid))
	seqlock.StoreInt64(&e.Time, t)
	seqlock.Store64(&e.Stack, stack)
	seqlock.Store64(&e.Token, token)
	e.Seq.End(2*tk + 2)
}
