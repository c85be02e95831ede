package lockreg

import (
	"cmp"
	"slices"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// EventKind is what happened in a lock event.
type EventKind uint32

const (
	EventAcquire   EventKind = iota + 1 // a goroutine took the lock
	EventRelease                        // the holder released it
	EventWait                           // a goroutine began to wait for it
	EventStuck                          // an acquire has waited past StuckAfter (the hook ran)
	EventTimeout                        // an acquire gave up: its context ended
	EventOwnerDied                      // the holder died holding the lock: the event names the dead holder (pid 0 if no record did), not the waiter that saw it
	EventRecovered                      // a waiter took the lock of a dead holder (Recover)
)

var eventNames = [...]string{"", "acquire", "release", "wait", "stuck", "timeout", "owner-died", "recovered"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "unknown"
}

// MarshalText makes kinds readable in JSON.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

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

// ring returns the header of lock i's event ring.
func (a *arena) ring(i uint32) *ringHdr {
	return (*ringHdr)(unsafe.Add(a.base, a.g.eventsOff+uint64(i)*a.g.ringSize))
}

// ringSlot returns slot k of lock i's ring: holder slots are [0, half),
// waiter slots [half, 2*half).
func (a *arena) ringSlot(i, k uint32) *eventSlot {
	return (*eventSlot)(unsafe.Add(a.base, a.g.eventsOff+uint64(i)*a.g.ringSize+ringHdrSize+uint64(k)*eventSize))
}

// holderKind tells whether events of kind k are written by the lock's
// holder, holding it.
func holderKind(k EventKind) bool {
	return k == EventAcquire || k == EventRelease || k == EventRecovered
}

// record appends an event of this process to lock's ring. Events of a
// holder kind must be recorded holding the lock.
func (r *Registry) record(kind EventKind, lock uint32, goid int64, stack uint64, t int64) {
	if holderKind(kind) {
		r.recordHeld(kind, lock, goid, stack, t)
		return
	}
	r.recordAs(kind, lock, r.pid, r.self.Start, goid, stack, t)
}

// recordHeld appends a holder event to lock's ring.
func (r *Registry) recordHeld(kind EventKind, lock uint32, goid int64, stack uint64, t int64) {
	a := r.a
	r.appendHeld(a.lock(lock), a.ring(lock), a.ringSlot(lock, 0), a.g.ringSlots/2-1, kind, goid, stack, t)
}

// appendHeld appends a holder event to the holder ring of lock slot s,
// whose ring header is ring, first holder slot slot0, and holder slots
// mask+1 (a Mutex keeps these, so that its acquire and release compute
// none of them). Only the holder writes the holder ring, so it writes the
// slot under its sequence number without a claim (internal/rt/seqlock): odd
// 2t+1, the fields, even 2t+2, then the head. A holder that dies mid-write
// leaves the slot odd and the head at t; the next holder writes the same
// slot again, from the odd value.
func (r *Registry) appendHeld(s *lockSlot, ring *ringHdr, slot0 *eventSlot, mask uint32, kind EventKind, goid int64, stack uint64, t int64) {
	h := s.holder.ring.Load()
	e := (*eventSlot)(unsafe.Add(unsafe.Pointer(slot0), uintptr(h&mask)*eventSize))
	seq := 2*uint64(h) + 1
	e.seq.BeginAt(seq)
	seqlock.Store32(&e.what, eventWhat(kind, uint32(ring.waitTicket.Load())))
	seqlock.Store32(&e.pid, r.pid)
	seqlock.Store64(&e.start, r.self.Start)
	seqlock.Store64(&e.goid, uint64(goid))
	seqlock.StoreInt64(&e.time, t)
	seqlock.Store64(&e.stack, stack)
	e.seq.End(seq + 1)
	seqlock.Store32(&s.holder.ring, h+1)
}

// recordAs appends a waiter event on behalf of the process pid with start
// time start: the dead holder, for EventOwnerDied.
//
// The ticket t from the ring's head says which slot to use; the writer
// claims the slot with a CAS from an even value below 2t+1 (a complete event
// of an earlier lap, or 0) to 2t+1. So two writers can never share a slot: a
// writer that finds the slot odd (being written, or left mid-write by a
// writer that died) or already at a later ticket gives up and counts its
// event as dropped rather than tear another. A ticket taken by a writer that
// died before claiming its slot costs nothing: the next lap claims the slot
// from the older even value.
func (r *Registry) recordAs(kind EventKind, lock, pid uint32, start uint64, goid int64, stack uint64, t int64) {
	a := r.a
	half := uint64(a.g.ringSlots / 2)
	tk := a.ring(lock).waitTicket.Add(1) - 1
	e := a.ringSlot(lock, uint32(half+tk&(half-1)))
	cur := e.seq.Load()
	if cur&1 != 0 || cur >= 2*tk+1 || !e.seq.Claim(cur, 2*tk+1) {
		a.hdr.dropped.Add(1)
		return
	}
	seqlock.Store32(&e.what, eventWhat(kind, 0))
	seqlock.Store32(&e.pid, pid)
	seqlock.Store64(&e.start, start)
	seqlock.Store64(&e.goid, uint64(goid))
	seqlock.StoreInt64(&e.time, t)
	seqlock.Store64(&e.stack, stack)
	e.seq.End(2*tk + 2)
}

// rawEvent is an event as read from a ring, before names and wall times.
type rawEvent struct {
	lock, pid                  uint32
	kind                       EventKind
	start, goid, stack, ticket uint64
	time                       int64
}

// readRing copies the events of lock i's ring, oldest first, into out. An
// event is kept only if its slot's sequence number is the one its ticket
// gives before and after the copy. Holder and waiter events are merged by
// the waiter ticket each holder event saw; times are made non-decreasing
// along the merged order (an event's time can only be later than the one
// before it: see docs/registry-format.md on the coarse clock). Called
// through guarded.
func (a *arena) readRing(i uint32, out, held, waits []rawEvent) (_ []rawEvent, total uint64) {
	half := a.g.ringSlots / 2
	held, waits = held[:half], waits[:half]
	nh, nw := 0, 0
	hh := a.lock(i).holder.ring.Load()
	for k := uint32(0); k < half; k++ {
		t := hh - half + k // wraps like the head
		e := a.ringSlot(i, t&(half-1))
		if ev, ok := readSlot(e, 2*uint64(t)+2); ok {
			ev.lock = i // ticket: pos, from readSlot
			held[nh] = ev
			nh++
		}
	}
	wt := a.ring(i).waitTicket.Load()
	for t := wt - min(wt, uint64(half)); t < wt; t++ {
		e := a.ringSlot(i, half+uint32(t&uint64(half-1)))
		if ev, ok := readSlot(e, 2*t+2); ok {
			ev.lock, ev.ticket = i, t
			waits[nw] = ev
			nw++
		}
	}
	// A holder event saw the waiter ticket pos (its low 24 bits): it
	// happened after the waiter events with tickets below pos.
	posOf := func(ev rawEvent) uint64 { return wt - (wt-ev.ticket)&(1<<24-1) }
	start := len(out)
	for h, w := 0, 0; h < nh || w < nw; {
		if w < nw && (h == nh || waits[w].ticket < posOf(held[h])) {
			out = append(out, waits[w])
			w++
		} else {
			out = append(out, held[h])
			h++
		}
	}
	for k := start + 1; k < len(out); k++ {
		out[k].time = max(out[k].time, out[k-1].time)
	}
	return out, uint64(hh) + wt
}

// readSlot copies an event slot if its sequence number is want before and
// after the copy.
func readSlot(e *eventSlot, want uint64) (rawEvent, bool) {
	if e.seq.Load() != want {
		return rawEvent{}, false // being written, overwritten, or never written
	}
	kind, pos := splitWhat(e.what.Load())
	ev := rawEvent{kind: kind, ticket: uint64(pos), pid: e.pid.Load(), start: e.start.Load(), goid: e.goid.Load(),
		time: e.time.Load(), stack: e.stack.Load()}
	return ev, e.seq.Valid(want)
}

// readEvents reads the rings of locks [0, n) and merges them by time into
// one list, oldest first, of at most limit events: the newest. Within a lock
// the ring order stands (times are non-decreasing along it, see readRing);
// events of different locks are ordered by time, ties by lock index. held
// counts the events the rings hold. Memory stays within about 2*limit events
// plus one ring, whatever the arena's capacities, and the pages of the rings
// and lock records read leave the resident set every releaseEvery bytes.
// Events older than the oldest of a full list are not kept, so a run of
// many full rings costs a few sorts. Called through guarded.
func (a *arena) readEvents(n uint32, limit int) (evs []rawEvent, total uint64, held int) {
	half := a.g.ringSlots / 2
	hbuf, wbuf := make([]rawEvent, half), make([]rawEvent, half)
	// One allocation: the list never grows past 2*limit plus a ring before
	// it is cut back to limit.
	evs = make([]rawEvent, 0, min(uint64(2*limit), uint64(n)*uint64(a.g.ringSlots))+uint64(a.g.ringSlots))
	released, releasedLocks := a.g.eventsOff, a.g.locksOff
	// Once the list has been cut to the newest limit events, an event
	// older than the oldest of them can never be kept: it is not appended.
	cut, haveCut := int64(0), false
	newest := func() {
		slices.SortStableFunc(evs, func(x, y rawEvent) int { return cmp.Compare(x.time, y.time) })
		if len(evs) > limit {
			evs = append(evs[:0], evs[len(evs)-limit:]...)
		}
		if len(evs) == limit && limit > 0 {
			cut, haveCut = evs[0].time, true
		}
	}
	for i := uint32(0); i < n; i++ {
		before := len(evs)
		var t uint64
		evs, t = a.readRing(i, evs, hbuf, wbuf)
		total += t
		held += len(evs) - before
		if haveCut {
			kept := before
			for _, e := range evs[before:] {
				if e.time >= cut {
					evs[kept] = e
					kept++
				}
			}
			evs = evs[:kept]
		}
		if len(evs) > 2*limit {
			newest()
		}
		// readRing read the ring and the lock record's head: let both go.
		if end := a.g.eventsOff + uint64(i+1)*a.g.ringSize; end-released >= releaseEvery {
			a.release(released, end)
			released = end
		}
		if end := a.g.locksOff + uint64(i+1)*lockSize; end-releasedLocks >= releaseEvery {
			a.release(releasedLocks, end)
			releasedLocks = end
		}
	}
	a.release(released, a.g.eventsOff+uint64(n)*a.g.ringSize)
	a.release(releasedLocks, a.g.locksOff+uint64(n)*lockSize)
	newest()
	return evs, total, held
}
