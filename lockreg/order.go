package lockreg

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

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

const (
	edgeSize       = 64
	limitEdges     = 1 << 20
	orderHeaderOff = 1024 // offset of orderHeader in the header page

	heldCells = 15 // locks held at once by the goroutines of a bucket: two cache lines
)

// orderHeader is the edges section's entry in the section table and its
// counters; it lives at orderHeaderOff in the header page.
type orderHeader struct {
	maxEdges  uint32        // 0 capacity: edges recorded at most
	edgeSlots uint32        // 4 slots of the hash table: a power of two, at least 2*maxEdges
	edgeSize  uint32        // 8
	_         uint32        // 12
	edgesOff  uint64        // 16
	used      atomic.Uint32 // 24 edges recorded (reserved), at most maxEdges
	_         uint32        // 28
	dropped   atomic.Uint64 // 32 distinct edges not recorded: the table was full (counted once per process and edge)
	untracked atomic.Uint64 // 40 acquires whose lock was not tracked as held: a bucket's cells were all taken
}

// edgeSlot is one slot of the edge table, an open-addressing hash table
// keyed by the ordered pair of lock indexes. A slot is claimed by a CAS of
// key from 0; only the claimant writes the other fields, then stores seq =
// 2. A slot is never freed nor rewritten. A reader that sees seq == 2 sees
// the fields (the stores before it are ordered before it, and its load
// before theirs); a key with seq != 2 is being written, or its writer died
// writing it.
type edgeSlot struct {
	key       atomic.Uint64 // 0 (from+1)<<32 | (to+1); 0 = free
	seq       atomic.Uint32 // 8 2 once the fields are written
	pid       atomic.Uint32 // 12
	start     atomic.Uint64 // 16
	goid      atomic.Uint64 // 24
	fromStack atomic.Uint64 // 32 where the goroutine took the lock it held
	toStack   atomic.Uint64 // 40 where it took the second lock
	time      atomic.Int64  // 48 CLOCK_MONOTONIC ns of the second acquire
	_         [8]byte       // 56
}

var (
	_ [0]byte                                        = [unsafe.Sizeof(edgeSlot{}) - edgeSize]byte{}
	_ [orderHeaderOff - unsafe.Sizeof(header{})]byte // header{} ends before orderHeaderOff
)

// edgeSlotsFor is the number of hash-table slots for a capacity.
func edgeSlotsFor(maxEdges uint32) uint32 { return ceilPow2Any(2 * maxEdges) }

func ceilPow2Any(n uint32) uint32 {
	p := uint32(1)
	for p < n {
		p <<= 1
	}
	return p
}

// withEdges places the edges section after the others.
func (g geometry) withEdges(maxEdges uint32) geometry {
	g.maxEdges, g.edgeSlots = maxEdges, edgeSlotsFor(maxEdges)
	g.edgesOff = g.total
	g.total = alignPage(g.total + uint64(g.edgeSlots)*edgeSize)
	return g
}

func edgeKey(from, to uint32) uint64 { return uint64(from+1)<<32 | uint64(to+1) }

// hashKey spreads a key over a table of 1<<bits slots.
func hashKey(k uint64, bits uint) uint32 { return uint32((k * 0x9E3779B97F4A7C15) >> (64 - bits)) }

func log2(n uint32) uint {
	b := uint(0)
	for 1<<b < n {
		b++
	}
	return b
}

// orderState is a process's part of lock ordering: who holds what, and
// the edges it knows are in the arena.
type orderState struct {
	held  heldset.Table[[heldCells]uint64]
	known []atomic.Uint64 // open addressing, a power of two; keys of edges recorded (or dropped) by this process
	kbits uint
}

var _ [0]byte = [unsafe.Sizeof(heldset.Bucket[[heldCells]uint64]{}) - 128]byte{}

func newOrderState(maxEdges uint32) *orderState {
	n := min(ceilPow2Any(2*maxEdges), 1<<16)
	return &orderState{known: make([]atomic.Uint64, n), kbits: log2(n)}
}

// knownProbes bounds the probes of the known set: past them a key is not
// cached, and its next acquire asks the arena again.
const knownProbes = 8

func (o *orderState) isKnown(k uint64) bool {
	n := uint32(len(o.known))
	i := hashKey(k, o.kbits)
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
	i := hashKey(k, o.kbits)
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
func (r *Registry) heldNested(b *heldset.Bucket[[heldCells]uint64], idx uint32, goid int64, stack uint64) {
	if !b.Hold(uint64(idx)+1, func(c uint64) { r.nested(uint32(c-1), idx, goid, stack) }) {
		r.a.ord.untracked.Add(1)
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
	if from >= r.a.g.maxLocks {
		return
	}
	h, ok := r.a.lock(from).holder.read(1)
	if !ok || h.pid != r.pid || int64(h.goid) != goid {
		return // another goroutine's lock, or being released
	}
	k := edgeKey(from, to)
	if r.order.isKnown(k) {
		return
	}
	r.addEdge(k, goid, h.stack, stack)
	r.order.addKnown(k)
}

// addEdge records edge k in the arena unless some process did: it probes
// from the key's hash to the key or a free slot. Capacity is reserved
// before a slot is claimed, and the table has at least twice as many slots
// as its capacity, so a free slot is always found, in a few probes.
func (r *Registry) addEdge(k uint64, goid int64, fromStack, toStack uint64) {
	a := r.a
	n := a.g.edgeSlots
	i := hashKey(k, log2(n))
	reserved := false
	for p := uint32(0); p < n; p++ {
		e := a.edge(i)
		v := e.key.Load()
		if v == k {
			break
		}
		if v == 0 {
			if !reserved {
				if a.ord.used.Add(1) > a.g.maxEdges {
					a.ord.used.Add(^uint32(0))
					a.ord.dropped.Add(1)
					return
				}
				reserved = true
			}
			if e.key.CompareAndSwap(0, k) {
				e.pid.Store(r.pid)
				e.start.Store(r.self.Start)
				e.goid.Store(uint64(goid))
				e.fromStack.Store(fromStack)
				e.toStack.Store(toStack)
				e.time.Store(nanotime())
				e.seq.Store(2)
				return
			}
			if e.key.Load() == k {
				break
			}
		}
		i = (i + 1) & (n - 1)
	}
	if reserved {
		a.ord.used.Add(^uint32(0)) // another process recorded it first
	}
}

// An OrderEdge is an edge of the run's lock-order graph: a goroutine took
// lock To while it held lock From.
type OrderEdge struct {
	From, To           string // the locks' names
	FromIndex, ToIndex int
	PID                int
	Start              uint64 // the process's start time
	Goroutine          int64
	FromStack          uint64 // stack-dictionary id of the process, where it took From
	ToStack            uint64 // where it took To, holding From
	Time               time.Time
}

// Orders is what a Snapshot read of the edge table.
type Orders struct {
	Edges    []OrderEdge // sorted by FromIndex, then ToIndex
	Capacity int
	// Dropped counts edges not recorded because the table was full, once
	// per process that took them.
	Dropped uint64
	// Untracked counts acquires that were not tracked as held, so that
	// edges from them were missed: a goroutine (or the goroutines sharing
	// its bucket) held more than 15 locks at once.
	Untracked uint64
	// Pending counts edges claimed but not written: being written, or their
	// writer died writing them.
	Pending int
}

// readOrders copies the edge table into s. Called through guarded. Its
// cost is one pass over the table's slots.
func (a *arena) readOrders(s *Snapshot, now time.Time, mono int64) {
	o := &s.Orders
	o.Capacity = int(a.g.maxEdges)
	o.Dropped = a.ord.dropped.Load()
	o.Untracked = a.ord.untracked.Load()
	names := make(map[int]string, len(s.Locks))
	for _, l := range s.Locks {
		names[l.Index] = l.Name
	}
	// The slots in key order (lock indexes), so that the list is sorted
	// without moving edges around.
	type slot struct {
		k uint64
		i uint32
	}
	// Every claimed slot was reserved first, so at most used slots hold a
	// key: the scan stops when it has seen that many, and an empty table
	// is not touched at all (its pages are never read into memory).
	used := min(a.ord.used.Load(), a.g.maxEdges)
	keys := make([]slot, 0, used)
	for i := uint32(0); i < a.g.edgeSlots && uint32(len(keys)) < used; i++ {
		if k := a.edge(i).key.Load(); k != 0 {
			keys = append(keys, slot{k, i})
		}
	}
	slices.SortFunc(keys, func(x, y slot) int { return cmp.Compare(x.k, y.k) })
	o.Edges = make([]OrderEdge, 0, len(keys))
	for _, sl := range keys {
		e := a.edge(sl.i)
		if e.seq.Load() != 2 {
			o.Pending++
			continue
		}
		from, to := int(sl.k>>32)-1, int(uint32(sl.k))-1
		fn, ok1 := names[from]
		tn, ok2 := names[to]
		if !ok1 || !ok2 {
			o.Pending++ // a lock whose name is not yet published
			continue
		}
		o.Edges = append(o.Edges, OrderEdge{From: fn, To: tn, FromIndex: from, ToIndex: to,
			PID: int(e.pid.Load()), Start: e.start.Load(), Goroutine: int64(e.goid.Load()),
			FromStack: e.fromStack.Load(), ToStack: e.toStack.Load(), Time: a.wall(e.time.Load(), mono, now)})
	}
}
