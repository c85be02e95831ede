package arena

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

const (
	EdgeSize       = 64
	LimitEdges     = 1 << 20
	OrderHeaderOff = 1024 // offset of orderHeader in the header page

	HeldCells = 15 // locks held at once by the goroutines of a bucket: two cache lines
)

// orderHeader is the edges section's entry in the section table and its
// counters; it lives at orderHeaderOff in the header page.
type orderHeader struct {
	maxEdges  uint32        // 0 capacity: edges recorded at most
	edgeSlots uint32        // 4 slots of the hash table: a power of two, at least 2*maxEdges
	edgeSize  uint32        // 8
	_         uint32        // 12
	edgesOff  uint64        // 16
	Used      atomic.Uint32 // 24 edges recorded (reserved), at most maxEdges
	_         uint32        // 28
	Dropped   atomic.Uint64 // 32 distinct edges not recorded: the table was full (counted once per process and edge)
	Untracked atomic.Uint64 // 40 acquires whose lock was not tracked as held: a bucket's cells were all taken
}

// edgeSlot is one slot of the edge table, an open-addressing hash table
// keyed by the ordered pair of lock indexes. A slot is claimed by a CAS of
// key from 0; only the claimant writes the other fields, then stores seq =
// 2. A slot is never freed nor rewritten. A reader that sees seq == 2 sees
// the fields (the stores before it are ordered before it, and its load
// before theirs); a key with seq != 2 is being written, or its writer died
// writing it.
type EdgeSlot struct {
	Key       atomic.Uint64 // 0 (from+1)<<32 | (to+1); 0 = free
	Seq       atomic.Uint32 // 8 2 once the fields are written
	Pid       atomic.Uint32 // 12
	Start     atomic.Uint64 // 16
	Goid      atomic.Uint64 // 24
	FromStack atomic.Uint64 // 32 where the goroutine took the lock it held
	ToStack   atomic.Uint64 // 40 where it took the second lock
	Time      atomic.Int64  // 48 CLOCK_MONOTONIC ns of the second acquire
	_         [8]byte       // 56
}

// edgeSlotsFor is the number of hash-table slots for a capacity.
func edgeSlotsFor(maxEdges uint32) uint32 { return CeilPow2Any(2 * maxEdges) }

func CeilPow2Any(n uint32) uint32 {
	p := uint32(1)
	for p < n {
		p <<= 1
	}
	return p
}

// withEdges places the edges section after the others.
func (g geometry) WithEdges(maxEdges uint32) geometry {
	g.MaxEdges, g.EdgeSlots = maxEdges, edgeSlotsFor(maxEdges)
	g.edgesOff = g.Total
	g.Total = alignPage(g.Total + uint64(g.EdgeSlots)*EdgeSize)
	return g
}

func EdgeKey(from, to uint32) uint64 { return uint64(from+1)<<32 | uint64(to+1) }

// hashKey spreads a key over a table of 1<<bits slots.
func HashKey(k uint64, bits uint) uint32 { return uint32((k * 0x9E3779B97F4A7C15) >> (64 - bits)) }

func Log2(n uint32) uint {
	b := uint(0)
	for 1<<b < n {
		b++
	}
	return b
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
func (a *Arena) readOrders(s *Snapshot, now time.Time, mono int64) {
	o := &s.Orders
	o.Capacity = int(a.G.MaxEdges)
	o.Dropped = a.Ord.Dropped.Load()
	o.Untracked = a.Ord.Untracked.Load()
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
	used := min(a.Ord.Used.Load(), a.G.MaxEdges)
	keys := make([]slot, 0, used)
	for i := uint32(0); i < a.G.EdgeSlots && uint32(len(keys)) < used; i++ {
		if k := a.Edge(i).Key.Load(); k != 0 {
			keys = append(keys, slot{k, i})
		}
	}
	slices.SortFunc(keys, func(x, y slot) int { return cmp.Compare(x.k, y.k) })
	o.Edges = make([]OrderEdge, 0, len(keys))
	for _, sl := range keys {
		e := a.Edge(sl.i)
		if e.Seq.Load() != 2 {
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
			PID: int(e.Pid.Load()), Start: e.Start.Load(), Goroutine: int64(e.Goid.Load()),
			FromStack: e.FromStack.Load(), ToStack: e.ToStack.Load(), Time: a.wall(e.Time.Load(), mono, now)})
	}
}
