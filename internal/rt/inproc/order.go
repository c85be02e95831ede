package inproc

import (
	"runtime"

	"github.com/lockwatch/lockwatch/internal/rt/heldset"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// Lock order (docs/lock-order.md). When a goroutine acquires lock B while
// it holds lock A (taken by the same goroutine, not yet released), the
// ordered pair A -> B is an edge of the process's lock-order graph. A lock
// is identified by its address (unique among the locks that exist at one
// time).
//
// Which locks a goroutine holds is tracked in a held-lock table
// (internal/rt/heldset), whose cells name a write hold by its holder record
// (1 + the slot, shifted left) and a read hold by the lock's address with
// the low bit set. A cell names a lock held by this goroutine only if the
// lock's own records say so (its holder record names the goroutine, or a
// reader record of the lock does), checked at each nested acquire (heldBy):
// so no edge is ever invented from a cell.
//
// A goroutine that holds nothing finds its bucket empty: a load of its
// count and two stores, no lookup. A nested acquire checks the pair in the
// edge table's keys and goes on; a pair new to the process takes the slow
// path (newEdge): its stack, the sites, and an insert under orders.mu, a
// spin lock the race detector does not see.

const (
	heldCells = 7 // locks held at once by the goroutines of a bucket: one cache line

	// defaultMaxEdges is how many edges a process records; keySlots
	// remembers up to keySlots/2 distinct pairs, recorded or dropped.
	defaultMaxEdges = 4096
	keySlots        = 4 * defaultMaxEdges // a power of two
	keyProbes       = 32
)

var held heldset.Table[[heldCells]uint64]

// WriteCell and ReadCell are the cells of a write hold (Hold's result) and
// of a read hold of the lock at addr.
func WriteCell(h uint32) uint64    { return uint64(h) << 1 }
func ReadCell(addr uintptr) uint64 { return uint64(addr) | 1 }

// An edge key is the ordered pair of lock addresses, written under
// orders.mu and read without a lock: a writer stores to, then from; a
// reader that sees the pair's from, then loads to, sees the writer's to. A
// key is never removed, so a reader that finds from == 0 knows the pair
// is not there.
type keySlot struct {
	from, to uint64
}

var keys [keySlots]keySlot

func keyHash(from, to uint64) uint64 { return mix(from*0x9e3779b97f4a7c15 ^ to) }

// known reports whether the pair from -> to was recorded or dropped.
//
//go:norace
func known(from, to uint64) bool {
	h := keyHash(from, to)
	for p := uint64(0); p < keyProbes; p++ {
		k := &keys[(h+p)&(keySlots-1)]
		f := k.from
		if f == 0 {
			return false
		}
		seqlock.LoadFence()
		if f == from && k.to == to {
			return true
		}
	}
	return false
}

// orders is the table of recorded edges.
var orders struct {
	mu    uint64 // a spin lock (lockOrders): serialises inserts and reads of edges
	max   int    // capacity; defaultMaxEdges unless a test changed it
	nkeys int    // keys stored. Called with mu held.
	edges []edgeRecord
	// dropped counts distinct pairs not recorded (the table was full);
	// once the keys are full too, pairs are no longer told apart or
	// counted (droppedRepeats says so, and full stops nested acquires
	// before they capture a stack: a program that makes pairs of new
	// mutexes for ever pays the slow path a bounded number of times).
	dropped        uint64
	droppedRepeats bool
	full           bool
	// untracked counts acquires whose lock found no free cell in its
	// goroutine's bucket: edges from it are missed.
	untracked uint64
}

func init() { orders.max = defaultMaxEdges }

// lockOrders takes orders.mu: a spin lock by a quiet CAS (seqlock.CAS64),
// which the race detector does not see, so recording an edge makes no
// happens-before edge between the goroutines that record them. Its holders
// never block.
func lockOrders() {
	for !seqlock.CAS64(&orders.mu, 0, 1) {
		runtime.Gosched()
	}
}

//go:norace
func unlockOrders() {
	seqlock.StoreFence()
	orders.mu = 0
}

// edgeRecord is one recorded edge.
type edgeRecord struct {
	from, to           lockIdent
	goid               int64
	fromPC, fromPC2    uintptr   // the return addresses of From's Lock and of its caller
	fromStack, toStack []uintptr // innermost first
	fromRead, toRead   bool
	time               int64 // Nanotime
}

// lockIdent is a lock as an edge names it when the edge was recorded.
type lockIdent struct {
	id            uint64
	kind          Kind
	first, first2 uintptr
	name          string
}

// A Bucket is the held-lock cells of the goroutines whose ids fall in it.
type Bucket = heldset.Bucket[[heldCells]uint64]

// BucketOf returns goroutine goid's bucket.
func BucketOf(goid int64) *Bucket { return held.Of(goid) }

// An acquire of the lock at addr by goroutine goid that succeeded, with
// the lock's holder or reader record written, calls
//
//	if b := inproc.BucketOf(goid); !b.HoldFirst(cell) {
//		inproc.HoldNested(b, cell, addr, goid)
//	}
//
// to record an edge from each lock the goroutine holds, then mark the lock
// held by it; its release, once its record is cleared, calls
//
//	if b := inproc.BucketOf(g); !b.UnholdOnly(cell) {
//		b.Unhold(cell)
//	}
//
// with g the goroutine that took it (the holder's or reader's, not
// necessarily the releaser's).

// HoldNested is the acquire in a bucket with cells in use: an edge from
// each lock of the bucket that the goroutine holds; a lock that finds no
// free cell is counted untracked.
//
//go:norace
//go:noinline
func HoldNested(b *Bucket, cell uint64, addr uintptr, goid int64) {
	if !b.Hold(cell, func(c uint64) { nested(c, cell, addr, goid) }) {
		seqlock.Add64(&orders.untracked, 1)
	}
}

// heldBy says whether the lock of cell c is held by goroutine goid, by its
// records, and returns its address and its site there.
//
//go:norace
func heldBy(c uint64, goid int64) (ok bool, addr, pc, pc2 uintptr, read bool, wslot uint32, kind Kind) {
	if c&1 != 0 {
		addr = uintptr(c &^ 1)
		h := readHash(addr, goid)
		for q := uint64(0); q < readProbes; q++ {
			r := &reading().readers[(h+q)&(readSlots-1)]
			if rc, ok := r.read(readTries); ok && rc.key == uint64(addr) && rc.goid == goid {
				return true, addr, rc.pc, rc.pc2, true, 0, KindRWMutex
			}
		}
		return false, 0, 0, 0, false, 0, 0
	}
	h := uint32(c >> 1)
	if h == 0 || h > nHolds {
		return false, 0, 0, 0, false, 0, 0
	}
	hc, ok := reading().holds[h-1].read(readTries, reading().hdr.mono0)
	if !ok || hc.goid != goid {
		return false, 0, 0, 0, false, 0, 0
	}
	return true, hc.key, hc.pc, hc.pc2, false, hc.wslot, Kind(hc.kind)
}

// nested handles a cell c of the acquiring goroutine's bucket, the new
// lock being cell at addr.
//
//go:norace
func nested(c, cell uint64, addr uintptr, goid int64) {
	if orders.full {
		return
	}
	ok, from, pc, pc2, read, wslot, kind := heldBy(c, goid)
	if !ok || from == addr || known(uint64(from), uint64(addr)) {
		return
	}
	if len(orders.edges) >= orders.max {
		// Full: the pair is counted, not recorded; no stack to capture.
		dropEdge(uint64(from), uint64(addr))
		return
	}
	newEdge(from, addr, pc, pc2, read, wslot, kind, cell, goid)
}

// newEdge records the edge from -> to unless it is known: the stack of the
// second acquire (from the caller of Lock: the drop-in's own frames are
// left out), the site (and stack, when known) of the first.
//
//go:noinline
func newEdge(from, to uintptr, pc, pc2 uintptr, fromRead bool, wslot uint32, fromKind Kind, cell uint64, goid int64) {
	var st record.Stack
	st.Capture(0)
	e := edgeRecord{goid: goid, fromRead: fromRead, toRead: cell&1 != 0, time: nanotime(),
		toStack: outside(st.Frames()), fromPC: pc, fromPC2: pc2}
	if wslot != 0 {
		if c, ok := reading().waiters[wslot-1].read(int(wslot-1), readTries); ok && c.key == uint64(from) && c.goid == goid {
			e.fromStack = c.pcs
		}
	}
	if e.fromStack == nil && e.fromPC != 0 {
		e.fromStack = fromStack(e.fromPC, e.fromPC2, e.toStack)
	}
	toKind := KindMutex
	if e.toRead {
		toKind = KindRWMutex
	} else if ok, _, _, _, _, _, k := heldBy(cell, goid); ok {
		toKind = k
	}
	var toPC, toPC2 uintptr
	if len(e.toStack) > 0 {
		toPC = e.toStack[0]
	}
	if len(e.toStack) > 1 {
		toPC2 = e.toStack[1]
	}
	e.from = lockIdent{id: uint64(from), kind: fromKind, first: pc, first2: pc2, name: reading().nameOf(from)}
	e.to = lockIdent{id: uint64(to), kind: toKind, first: toPC, first2: toPC2, name: reading().nameOf(to)}
	insertEdge(e)
}

//go:norace
func insertEdge(e edgeRecord) {
	from, to := e.from.id, e.to.id
	lockOrders()
	defer unlockOrders()
	if known(from, to) {
		return
	}
	if len(orders.edges) >= orders.max {
		orders.dropped++
		if !addKey(from, to) {
			orders.droppedRepeats = true
			orders.full = true
		}
		return
	}
	if !addKey(from, to) {
		// Cannot happen while edges < keySlots/4: the keys have room.
		orders.dropped++
		return
	}
	e.from, e.to = sameIdent(e.from), sameIdent(e.to)
	orders.edges = append(orders.edges, e)
}

// outside drops the frames of the drop-in (this package's, the held-lock
// table's, and the sync package's that called them) from the start of a
// stack: it starts at the caller of Lock, whatever was inlined (UserStack).
func outside(pcs []uintptr) []uintptr {
	return append([]uintptr(nil), UserStack(pcs)...)
}

// dropEdge counts the pair from -> to as not recorded (the table is full),
// once, while the keys have room to tell pairs apart.
//
//go:norace
func dropEdge(from, to uint64) {
	lockOrders()
	defer unlockOrders()
	if known(from, to) {
		return
	}
	orders.dropped++
	if !addKey(from, to) {
		orders.droppedRepeats = true
		orders.full = true
	}
}

// sameIdent gives a lock the site it had in the first edge that named it,
// so that the edges name each lock one way (a lock has no site of its own:
// an edge knows where it was taken that time). Called with orders.mu held.
//
//go:norace
func sameIdent(l lockIdent) lockIdent {
	for i := range orders.edges {
		e := &orders.edges[i]
		for _, k := range [2]*lockIdent{&e.from, &e.to} {
			if k.id == l.id {
				k2 := *k
				k2.name = l.name // the latest SetName
				return k2
			}
		}
	}
	return l
}

// addKey stores the pair in keys, unless they are half full. Called with
// orders.mu held.
//
//go:norace
func addKey(from, to uint64) bool {
	if orders.nkeys >= keySlots/2 {
		return false
	}
	h := keyHash(from, to)
	for p := uint64(0); p < keyProbes; p++ {
		k := &keys[(h+p)&(keySlots-1)]
		if k.from == 0 {
			k.to = to
			seqlock.StoreFence()
			k.from = from
			orders.nkeys++
			return true
		}
	}
	return false
}

// fromStack rebuilds the stack of the first acquire of an edge from its
// site and the stack of the second: when the function that took the first
// lock (pc's) is still on the goroutine's stack, as with Lock; defer
// Unlock; the second Lock, its callers are those of that frame. Else the
// site and its caller.
func fromStack(pc, pc2 uintptr, to []uintptr) []uintptr {
	f := runtime.FuncForPC(pc - 1)
	if f != nil {
		for i, q := range to {
			if g := runtime.FuncForPC(q - 1); g != nil && g.Entry() == f.Entry() {
				return append([]uintptr{pc}, to[i+1:]...)
			}
		}
	}
	if pc2 != 0 {
		return []uintptr{pc, pc2}
	}
	return []uintptr{pc}
}

// An Edge is a recorded edge: goroutine Goroutine took lock To while it
// held lock From.
type Edge struct {
	From, To OrderLock
	// Goroutine took both.
	Goroutine int64
	// FromStack is where it took From: the recorded stack if it waited
	// for it, else its site followed by the callers of that frame in
	// ToStack when it is still there, else its site and its caller.
	// FromSite is the return address of its Lock call, FromSite2 its
	// caller's. ToStack is where it took To.
	FromSite, FromSite2 uintptr
	FromStack, ToStack  []uintptr
	// FromRead and ToRead say that the lock was read-locked (RLock).
	FromRead, ToRead bool
	Time             int64 // record.Nanotime of the second acquire
}

// An OrderLock is a lock as an edge names it.
type OrderLock struct {
	ID            uint64
	Kind          Kind
	Name          string // SetName's, or ""
	First, First2 uintptr
}

// Orders is the process's lock-order edges.
type Orders struct {
	Edges    []Edge // in the order they were recorded
	Capacity int
	// Dropped counts edges not recorded because the table was full:
	// distinct pairs; with DroppedRepeats at least that many (past the
	// keys' room, pairs are neither told apart nor counted).
	Dropped        uint64
	DroppedRepeats bool
	// Untracked counts acquires not tracked as held (a bucket's cells were
	// all taken): edges from them were missed.
	Untracked uint64
}

// TakeOrders copies the recorded edges. The stacks are copied too, by
// loops the race detector does not see: the goroutines that recorded them
// made no happens-before edge with the caller.
func TakeOrders() Orders {
	es, o := takeOrders()
	o.Edges = make([]Edge, 0, len(es))
	for i := range es {
		o.Edges = append(o.Edges, edgeOf(&es[i]))
	}
	return o
}

//go:norace
func edgeOf(e *edgeRecord) Edge {
	return Edge{From: e.from.lock(), To: e.to.lock(), Goroutine: e.goid, FromSite: e.fromPC,
		FromSite2: e.fromPC2, FromStack: copyPCs(e.fromStack), ToStack: copyPCs(e.toStack), FromRead: e.fromRead,
		ToRead: e.toRead, Time: e.time}
}

//go:norace
func copyPCs(pcs []uintptr) []uintptr {
	if pcs == nil {
		return nil
	}
	out := make([]uintptr, len(pcs))
	// A loop, not copy: go:norace hides this function's own loads from the
	// race detector, which it does not promise for copy (the runtime's
	// slicecopy reports its reads to the race detector itself).
	//lint:ignore S1001 a loop, so that the race detector does not see the read
	for i := range pcs {
		out[i] = pcs[i]
	}
	return out
}

//go:norace
func takeOrders() ([]edgeRecord, Orders) {
	lockOrders()
	defer unlockOrders()
	es := orders.edges[:len(orders.edges):len(orders.edges)]
	return es, Orders{Capacity: orders.max, Dropped: orders.dropped, DroppedRepeats: orders.droppedRepeats,
		Untracked: loadU64(&orders.untracked)}
}

func (l lockIdent) lock() OrderLock {
	return OrderLock{ID: l.id, Kind: l.kind, First: l.first, First2: l.first2, Name: l.name}
}

// EdgeCount returns how many edges are recorded and dropped: it changes
// when TakeOrders would tell something new.
//
//go:norace
func EdgeCount() (recorded int, dropped uint64) {
	lockOrders()
	defer unlockOrders()
	return len(orders.edges), orders.dropped
}
