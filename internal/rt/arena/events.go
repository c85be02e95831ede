package arena

import (
	"cmp"
	"slices"
	"unsafe"
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

// ring returns the header of lock i's event ring.
func (a *Arena) Ring(i uint32) *RingHdr {
	return (*RingHdr)(unsafe.Add(a.base, a.G.eventsOff+uint64(i)*a.G.ringSize))
}

// ringSlot returns slot k of lock i's ring: holder slots are [0, half),
// waiter slots [half, 2*half).
func (a *Arena) RingSlot(i, k uint32) *EventSlot {
	return (*EventSlot)(unsafe.Add(a.base, a.G.eventsOff+uint64(i)*a.G.ringSize+ringHdrSize+uint64(k)*EventSize))
}

// holderKind tells whether events of kind k are written by the lock's
// holder, holding it.
func HolderKind(k EventKind) bool {
	return k == EventAcquire || k == EventRelease || k == EventRecovered
}

// rawEvent is an event as read from a ring, before names and wall times.
type rawEvent struct {
	lock, pid                  uint32
	kind                       EventKind
	start, goid, stack, ticket uint64
	time                       int64
	token                      uint64
}

// readRing copies the events of lock i's ring, oldest first, into out. An
// event is kept only if its slot's sequence number is the one its ticket
// gives before and after the copy. Holder and waiter events are merged by
// the waiter ticket each holder event saw; times are made non-decreasing
// along the merged order (an event's time can only be later than the one
// before it: see docs/registry-format.md on the coarse clock). Called
// through guarded.
func (a *Arena) readRing(i uint32, out, held, waits []rawEvent) (_ []rawEvent, total uint64) {
	half := a.G.RingSlots / 2
	held, waits = held[:half], waits[:half]
	nh, nw := 0, 0
	hh := a.Lock(i).Holder.Ring.Load()
	for k := uint32(0); k < half; k++ {
		t := hh - half + k // wraps like the head
		e := a.RingSlot(i, t&(half-1))
		if ev, ok := readSlot(e, 2*uint64(t)+2); ok {
			ev.lock = i // ticket: pos, from readSlot
			held[nh] = ev
			nh++
		}
	}
	wt := a.Ring(i).WaitTicket.Load()
	for t := wt - min(wt, uint64(half)); t < wt; t++ {
		e := a.RingSlot(i, half+uint32(t&uint64(half-1)))
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
func readSlot(e *EventSlot, want uint64) (rawEvent, bool) {
	if e.Seq.Load() != want {
		return rawEvent{}, false // being written, overwritten, or never written
	}
	kind, pos := splitWhat(e.What.Load())
	ev := rawEvent{kind: kind, ticket: uint64(pos), pid: e.Pid.Load(), start: e.Start.Load(), goid: e.Goid.Load(),
		time: e.Time.Load(), stack: e.Stack.Load(), token: e.Token.Load()}
	return ev, e.Seq.Valid(want)
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
func (a *Arena) readEvents(n uint32, limit int) (evs []rawEvent, total uint64, held int) {
	half := a.G.RingSlots / 2
	hbuf, wbuf := make([]rawEvent, half), make([]rawEvent, half)
	// One allocation: the list never grows past 2*limit plus a ring before
	// it is cut back to limit.
	evs = make([]rawEvent, 0, min(uint64(2*limit), uint64(n)*uint64(a.G.RingSlots))+uint64(a.G.RingSlots))
	released, releasedLocks := a.G.eventsOff, a.G.locksOff
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
		if end := a.G.eventsOff + uint64(i+1)*a.G.ringSize; end-released >= releaseEvery {
			a.release(released, end)
			released = end
		}
		if end := a.G.locksOff + uint64(i+1)*lockSize; end-releasedLocks >= releaseEvery {
			a.release(releasedLocks, end)
			releasedLocks = end
		}
	}
	a.release(released, a.G.eventsOff+uint64(n)*a.G.ringSize)
	a.release(releasedLocks, a.G.locksOff+uint64(n)*lockSize)
	newest()
	return evs, total, held
}
