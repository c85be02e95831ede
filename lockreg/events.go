package lockreg

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

// record appends an event to the ring. The ticket t from the shared head
// says which slot to use; the writer claims the slot with a CAS from an even
// value below 2t+1 (a complete event of an earlier lap, or 0) to 2t+1. So two
// writers can never share a slot: a writer that finds the slot odd (being
// written, or left mid-write by a writer that died) or already at a later
// ticket gives up and counts its event as dropped rather than tear another.
// A ticket taken by a writer that died before claiming its slot costs
// nothing: the next lap claims the slot from the older even value.
func (r *Registry) record(kind EventKind, lock uint32, goid int64, stack uint64, t int64) {
	r.recordAs(kind, lock, r.pid, r.self.Start, goid, stack, t)
}

// recordAs records an event on behalf of the process pid with start time
// start: the dead holder, for EventOwnerDied.
func (r *Registry) recordAs(kind EventKind, lock, pid uint32, start uint64, goid int64, stack uint64, t int64) {
	h := r.a.hdr
	n := uint64(r.a.g.maxEvents)
	tk := h.eventHead.Add(1) - 1
	e := r.a.event(uint32(tk & (n - 1)))
	cur := e.seq.Load()
	if cur&1 != 0 || cur >= 2*tk+1 || !e.seq.CompareAndSwap(cur, 2*tk+1) {
		h.dropped.Add(1)
		return
	}
	// The CAS above is a full barrier; the field stores below are ordered
	// before the final seq store as in a seqlock (relaxed_amd64.go).
	store32(&e.what, eventWhat(kind, lock))
	store32(&e.pid, pid)
	store64(&e.start, start)
	store64(&e.goid, uint64(goid))
	storeI64(&e.time, t)
	store64(&e.stack, stack)
	store64(&e.seq, 2*tk+2)
}
