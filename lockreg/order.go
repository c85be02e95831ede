package lockreg

import (
	"sync/atomic"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/rt/heldset"
)

// Lock order. When a goroutine acquires lock B while it holds lock A (taken
// by that same goroutine and not yet released), the ordered pair A -> B is
// an edge of the run's lock-order graph. A cycle in that graph (A -> B and
// B -> A, perhaps taken by two processes that never overlapped) is a
// deadlock waiting for the right interleaving; lockwatch reports it as the
// lock-order finding (docs/lock-order.md).
//
// A lock is identified by its name, which is its identity across the
// processes of a run (one name, one lock slot, one index). Edges live in
// the arena's edge table, so an edge taken by one process and its inverse
// taken by another are read together, also after both exited. Each pair is
// recorded once per run, by the first goroutine that takes it, with its
// pid, start time, goroutine and the stack ids of both acquires (the
// holder's, from its holder record, and the new one).
//
// Which locks a goroutine holds is tracked in this process by a held-lock
// table (internal/rt/heldset), whose cells hold the index + 1 of a lock held
// by a goroutine of the bucket; a release clears the cell in the bucket of
// the goroutine the holder record names (any goroutine may Unlock). A
// goroutine that holds nothing finds its bucket empty and goes on: no edge
// is looked up. No edge is invented from a cell: a cell naming a lock is an
// edge only when the lock's holder record names this process and this
// goroutine (nested). So a bucket shared by two goroutines, a cell being
// cleared, a lock unlocked by another goroutine and a lost cell never give
// an edge that was not taken (TestOrderSharedBucketRace).
//
// A nested acquire looks the pair up in this process's set of known edges
// (known) before it touches the arena; a pair new to the process is
// inserted in the arena's table, where another process may have put it
// already.

var (
	_ [0]byte                                                    = [unsafe.Sizeof(arena.EdgeSlot{}) - arena.EdgeSize]byte{}
	_ [arena.OrderHeaderOff - unsafe.Sizeof(arena.Header{})]byte // header{} ends before orderHeaderOff
)

// orderState is a process's part of lock ordering: who holds what, and
// the edges it knows are in the arena.
type orderState struct {
	held  heldset.Table[[arena.HeldCells]uint64]
	known []atomic.Uint64 // open addressing, a power of two; keys of edges recorded (or dropped) by this process
	kbits uint
}

var _ [0]byte = [unsafe.Sizeof(heldset.Bucket[[arena.HeldCells]uint64]{}) - 128]byte{}

func newOrderState(maxEdges uint32) *orderState {
	n := min(arena.CeilPow2Any(2*maxEdges), 1<<16)
	return &orderState{known: make([]atomic.Uint64, n), kbits: arena.Log2(n)}
}

// knownProbes bounds the probes of the known set: past them a key is not
// cached, and its next acquire asks the arena again.
const knownProbes = 8

func (o *orderState) isKnown(k uint64) bool {
	n := uint32(len(o.known))
	i := arena.HashKey(k, o.kbits)
	for p := 0; p < knownProbes; p++ {
		switch o.known[i].Load() {
		case k:
			return true
		case 0:
			return false
		}
		i = (i + 1) & (n - 1)
	}
	return false
}

func (o *orderState) addKnown(k uint64) {
	n := uint32(len(o.known))
	i := arena.HashKey(k, o.kbits)
	for p := 0; p < knownProbes; p++ {
		v := o.known[i].Load()
		if v == k || (v == 0 && o.known[i].CompareAndSwap(0, k)) || o.known[i].Load() == k {
			return
		}
		i = (i + 1) & (n - 1)
	}
}

// heldAcquired is called by an acquire that succeeded with the record, the
// holder record written: it records an edge from each lock the goroutine
// holds, then marks the lock held by the goroutine. Never blocks (it runs
// pinned on the fast path). In an empty bucket (a goroutine that holds
// nothing, the common case) it is a load and two plain stores.
func (r *Registry) heldAcquired(idx uint32, goid int64, stack uint64) {
	if b := r.order.held.Of(goid); !b.HoldFirst(uint64(idx) + 1) {
		r.heldNested(b, idx, goid, stack)
	}
}

// heldNested is heldAcquired in a bucket with cells in use: an edge from
// each lock of the bucket that this goroutine holds; a lock that finds no
// free cell is counted untracked.
//
//go:noinline
func (r *Registry) heldNested(b *heldset.Bucket[[arena.HeldCells]uint64], idx uint32, goid int64, stack uint64) {
	if !b.Hold(uint64(idx)+1, func(c uint64) { r.nested(uint32(c-1), idx, goid, stack) }) {
		r.a.Ord.Untracked.Add(1)
	}
}

// heldReleased is called by Unlock once it has cleared the holder record
// of lock idx, held by goroutine goid (the record's), before the lock word
// is released: so the next holder's cell is never the one cleared here.
// If idx is the bucket's one cell, it is a compare and two plain stores.
func (r *Registry) heldReleased(idx uint32, goid int64) {
	if b := r.order.held.Of(goid); !b.UnholdOnly(uint64(idx) + 1) {
		b.Unhold(uint64(idx) + 1)
	}
}

// nested handles a cell of the acquiring goroutine's bucket: if lock from
// is held by this goroutine, from -> to is an edge.
//
// It reads the holder record once, never retrying: it runs pinned (Lock's
// fast path), where a retry's Gosched is a fatal error of the runtime
// ("schedule: holding locks"; TestOrderSharedBucketRace). One try is
// exact: a record this goroutine wrote (it holds the lock) has no other
// writer while it holds it (a foreign Unlock clears only pid), so it is
// never torn; a torn one is another goroutine's, being written, and gives
// no edge either way.
func (r *Registry) nested(from, to uint32, goid int64, stack uint64) {
	if from >= r.a.G.MaxLocks {
		return
	}
	h, ok := r.a.Lock(from).Holder.Read(1)
	if !ok || h.Pid != r.pid || int64(h.Goid) != goid {
		return // another goroutine's lock, or being released
	}
	k := arena.EdgeKey(from, to)
	if r.order.isKnown(k) {
		return
	}
	r.addEdge(k, goid, h.Stack, stack)
	r.order.addKnown(k)
}

// addEdge records edge k in the arena unless some process did: it probes
// from the key's hash to the key or a free slot. Capacity is reserved
// before a slot is claimed, and the table has at least twice as many slots
// as its capacity, so a free slot is always found, in a few probes.
func (r *Registry) addEdge(k uint64, goid int64, fromStack, toStack uint64) {
	a := r.a
	n := a.G.EdgeSlots
	i := arena.HashKey(k, arena.Log2(n))
	reserved := false
	for p := uint32(0); p < n; p++ {
		e := a.Edge(i)
		v := e.Key.Load()
		if v == k {
			break
		}
		if v == 0 {
			if !reserved {
				if a.Ord.Used.Add(1) > a.G.MaxEdges {
					a.Ord.Used.Add(^uint32(0))
					a.Ord.Dropped.Add(1)
					return
				}
				reserved = true
			}
			if e.Key.CompareAndSwap(0, k) {
				e.Pid.Store(r.pid)
				e.Start.Store(r.self.Start)
				e.Goid.Store(uint64(goid))
				e.FromStack.Store(fromStack)
				e.ToStack.Store(toStack)
				e.Time.Store(nanotime())
				e.Seq.Store(2)
				return
			}
			if e.Key.Load() == k {
				break
			}
		}
		i = (i + 1) & (n - 1)
	}
	if reserved {
		a.Ord.Used.Add(^uint32(0)) // another process recorded it first
	}
}
