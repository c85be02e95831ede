package inproc

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/record"
)

// Lock order (docs/lock-order.md). When a goroutine acquires lock B while
// it holds lock A (taken by the same goroutine, not yet released), the
// ordered pair A -> B is an edge of the process's lock-order graph. A lock
// is identified by its instance: its id in the table, never reused.
//
// Which locks a goroutine holds is tracked in a table of buckets chosen by
// goroutine id, each a cache line of heldCells cells naming a lock held by
// a goroutine of the bucket. An acquire reads its bucket and stores its
// lock into a free cell; the release clears the cell, in the bucket of the
// goroutine that took the lock (the holder record names it, whoever
// unlocks). The store is a plain move on amd64 (relaxed_amd64.go), not a
// CAS: two goroutines of one bucket that store into the same free cell at
// the same moment lose one of the two cells, and the edges from that lock
// are missed until it is taken again. No edge is ever invented from a
// cell: a cell names a lock held by this goroutine only if the lock's own
// records say so (its holder record names the goroutine, or a reader
// record of the lock does), checked at each nested acquire. So a bucket
// shared with other goroutines, a cell being cleared, a lock unlocked by
// another goroutine and a lost cell give no edge.
//
// A cell holds a pointer to the lock's State, so a lock stays alive while
// a cell names it: a lock dropped while held (or whose cell was left by a
// lost race) is kept until its cell is cleared or reused. heldCells cells
// per bucket bound that.
//
// A goroutine that holds nothing finds its bucket empty: a load of its
// count and two stores, no lookup. A nested acquire checks the
// pair in the edge table's keys (two loads, lock-free) and goes on; a pair
// new to the process takes the slow path (newEdge): its stack, the sites,
// and an insert under orders.mu.

const (
	heldBuckets = 1024 // a power of two
	heldCells   = 7    // locks held at once by the goroutines of a bucket

	// defaultMaxEdges is how many edges a process records; keySlots
	// remembers up to keySlots/2 distinct pairs, recorded or dropped.
	defaultMaxEdges = 4096
	keySlots        = 4 * defaultMaxEdges // a power of two
	keyProbes       = 32
)

// heldBucket is a cache line: n, the number of cells in use as the
// bucket's goroutines last wrote it, and the cells. n lets an acquire of a
// goroutine whose bucket is empty (the common case) skip the scan: one load,
// two stores. It is written with plain stores too, so two goroutines of one
// bucket racing may leave it off: too high, and the next acquire scans and
// counts again; too low (0 while a cell is in use), and an acquire takes
// cell 0 without looking at the others. Either way an edge may be missed,
// never invented.
type heldBucket struct {
	n     atomic.Uint32
	_     uint32
	cells [heldCells]atomic.Pointer[State]
}

var _ [0]byte = [unsafe.Sizeof(heldBucket{}) - 64]byte{}

var held [heldBuckets]heldBucket

func bucketOf(goid int64) *heldBucket {
	return &held[(uint64(goid)*0x9e3779b97f4a7c15)>>(64-10)]
}

// An edge key is the ordered pair of lock ids. keys is an open-addressing
// table written under orders.mu and read without a lock: a writer stores
// to, then from; a reader that loads from and sees the pair's from, then
// loads to, sees the writer's to (sync/atomic orders them). A key is never
// removed, so a reader that finds from == 0 knows the pair is not there.
type keySlot struct {
	from, to atomic.Uint64
}

var keys [keySlots]keySlot

func keyHash(from, to uint64) uint64 { return mix(from*0x9e3779b97f4a7c15 ^ to) }

// known reports whether the pair from -> to was recorded or dropped.
func known(from, to uint64) bool {
	h := keyHash(from, to)
	for p := uint64(0); p < keyProbes; p++ {
		k := &keys[(h+p)&(keySlots-1)]
		f := k.from.Load()
		if f == 0 {
			return false
		}
		if f == from && k.to.Load() == to {
			return true
		}
	}
	return false
}

// orders is the table of recorded edges.
var orders struct {
	mu    sync.Mutex // serialises inserts and reads of edges
	max   int        // capacity; defaultMaxEdges unless a test changed it
	nkeys int        // keys stored. Called with mu held.
	edges []edgeRecord
	// dropped counts distinct pairs not recorded (the table was full);
	// once the keys are full too, every acquire of a pair not recorded
	// adds one (droppedRepeats says so).
	dropped        atomic.Uint64
	droppedRepeats atomic.Bool
	// untracked counts acquires whose lock found no free cell in its
	// goroutine's bucket: edges from it are missed.
	untracked atomic.Uint64
	added     chan struct{} // a token when an edge is recorded
}

func init() {
	orders.max = defaultMaxEdges
	orders.added = make(chan struct{}, 1)
}

// edgeRecord is one recorded edge.
type edgeRecord struct {
	from, to           lockIdent
	goid               int64
	fromPC, fromPC2    uintptr   // the return addresses of From's Lock and of its caller
	fromStack, toStack []uintptr // innermost first
	fromRead, toRead   bool
	time               int64 // record.Nanotime
}

// lockIdent is a lock as an edge names it: the table's entry at the time
// the edge was recorded (the lock may since have been collected).
type lockIdent struct {
	id            uint64
	kind          Kind
	first, first2 uintptr
	name          *atomic.Pointer[string]
}

// A Bucket is the held-lock cells of the goroutines whose ids fall in it.
type Bucket = heldBucket

// BucketOf returns goroutine goid's bucket.
func BucketOf(goid int64) *Bucket { return bucketOf(goid) }

// An acquire of s by goroutine goid that succeeded, with the lock's holder
// or reader record written, calls
//
//	if b := inproc.BucketOf(goid); !b.HoldFirst(s) {
//		b.Hold(s, goid)
//	}
//
// to record an edge from each lock the goroutine holds, then mark s held
// by it. HoldFirst is inlined: in an empty bucket (a goroutine that holds
// nothing, the common case) it is a load and two stores.

// HoldFirst marks s held in an empty bucket and reports whether the bucket
// was empty.
func (b *Bucket) HoldFirst(s *State) bool {
	if b.n.Load() != 0 {
		return false
	}
	storeCell(&b.cells[0], s)
	storeN(&b.n, 1)
	return true
}

// Hold is the acquire in a bucket with cells in use: each cell is looked at
// (an edge, if its lock is this goroutine's), s takes a free one, and n is
// counted again.
//
//go:noinline
func (b *Bucket) Hold(s *State, goid int64) {
	free, n := -1, uint32(0)
	for i := range b.cells {
		p := b.cells[i].Load()
		if p == nil {
			if free < 0 {
				free = i
			}
			continue
		}
		n++
		if p != s {
			nested(p, s, goid)
		}
	}
	if free < 0 {
		orders.untracked.Add(1)
		storeN(&b.n, n)
		return
	}
	storeCell(&b.cells[free], s)
	storeN(&b.n, n+1)
}

// The release of s held by goroutine goid (the holder's or reader's, not
// necessarily the releaser's), once its record is cleared, calls
//
//	if b := inproc.BucketOf(goid); !b.UnholdOnly(s) {
//		b.Unhold(s)
//	}

// UnholdOnly clears the bucket if s is its one cell, and reports whether
// it did.
func (b *Bucket) UnholdOnly(s *State) bool {
	if b.cells[0].Load() != s || b.n.Load() != 1 {
		return false
	}
	storeCell(&b.cells[0], nil)
	storeN(&b.n, 0)
	return true
}

// Unhold clears the cell of s, if the bucket has one, and counts the
// cells in use again.
//
//go:noinline
func (b *Bucket) Unhold(s *State) {
	cleared, n := false, uint32(0)
	for i := range b.cells {
		switch p := b.cells[i].Load(); {
		case p == nil:
		case p == s && !cleared:
			storeCell(&b.cells[i], nil)
			cleared = true
		default:
			n++
		}
	}
	storeN(&b.n, n)
}

// heldBy says whether lock p is held by goroutine goid, by its records:
// written (its holder record), or read (one of its reader records).
func heldBy(p *State, goid int64) (ok, read bool) {
	if p.Holder.Goroutine() == goid {
		return true, false
	}
	id := p.id.Load()
	if id == 0 {
		return false, false
	}
	h := readHash(id, goid)
	for q := uint64(0); q < readProbes; q++ {
		r := &readers[(h+q)&(readSlots-1)]
		if r.key.Load() == id && r.goid.Load() == goid {
			return true, true
		}
	}
	return false, false
}

// nested handles a cell of the acquiring goroutine's bucket naming p.
func nested(p, s *State, goid int64) {
	ok, read := heldBy(p, goid)
	if !ok {
		return // another goroutine's lock, or a stale cell
	}
	if known(p.id.Load(), s.id.Load()) {
		return
	}
	newEdge(p, s, goid, read)
}

// newEdge records the edge p -> s unless it is known: the stack of s's
// acquire (from the caller of Lock: the drop-in's own frames are left
// out), the site (and stack, when known) of p's.
//
//go:noinline
func newEdge(p, s *State, goid int64, fromRead bool) {
	var st record.Stack
	st.Capture(0)
	from, to := p.id.Load(), s.id.Load()
	e := edgeRecord{goid: goid, fromRead: fromRead, toRead: s.Holder.Goroutine() != goid, time: record.Nanotime(),
		toStack: outside(st.Frames())}
	if fromRead {
		e.fromPC, e.fromPC2 = readSite(from, goid)
	} else if h, ok := p.Holder.Read(readTries); ok && h.Goroutine == goid {
		e.fromPC, e.fromPC2 = h.PC, h.PC2
		if h.Slot != 0 {
			if c, ok := waiters[h.Slot-1].read(int(h.Slot-1), readTries); ok && c.key == from && c.goid == goid {
				e.fromStack = c.pcs
			}
		}
	}
	if e.fromStack == nil && e.fromPC != 0 {
		e.fromStack = fromStack(e.fromPC, e.fromPC2, e.toStack)
	}
	e.from, e.to = identOf(from), identOf(to)

	orders.mu.Lock()
	defer orders.mu.Unlock()
	if known(from, to) {
		return
	}
	if len(orders.edges) >= orders.max {
		orders.dropped.Add(1)
		if !addKey(from, to) {
			orders.droppedRepeats.Store(true)
		}
		return
	}
	if !addKey(from, to) {
		// Cannot happen while edges < keySlots/4: the keys have room.
		orders.dropped.Add(1)
		return
	}
	orders.edges = append(orders.edges, e)
	select {
	case orders.added <- struct{}{}:
	default:
	}
}

// outside drops the frames of the drop-in (this package's, and the sync
// package's that called it) from the start of a stack: it starts at the
// caller of Lock, whatever was inlined.
func outside(pcs []uintptr) []uintptr {
	for len(pcs) > 0 {
		f := runtime.FuncForPC(pcs[0] - 1)
		if f == nil {
			break
		}
		name := f.Name()
		if !strings.HasPrefix(name, "github.com/lockwatch/lockwatch/internal/inproc.") &&
			!strings.HasPrefix(name, "github.com/lockwatch/lockwatch/sync.") {
			break
		}
		pcs = pcs[1:]
	}
	return append([]uintptr(nil), pcs...)
}

// addKey stores the pair in keys, unless they are half full. Called with
// orders.mu held.
func addKey(from, to uint64) bool {
	if orders.nkeys >= keySlots/2 {
		return false
	}
	h := keyHash(from, to)
	for p := uint64(0); p < keyProbes; p++ {
		k := &keys[(h+p)&(keySlots-1)]
		if k.from.Load() == 0 {
			k.to.Store(to)
			k.from.Store(from)
			orders.nkeys++
			return true
		}
	}
	return false
}

// readSite is the site of goroutine goid's read lock of lock id.
func readSite(id uint64, goid int64) (pc, pc2 uintptr) {
	h := readHash(id, goid)
	for q := uint64(0); q < readProbes; q++ {
		if c, ok := readers[(h+q)&(readSlots-1)].read(readTries); ok && c.key == id && c.goid == goid {
			return c.pc, c.pc2
		}
	}
	return 0, 0
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

func identOf(id uint64) lockIdent {
	e := lookup(id)
	if e == nil {
		return lockIdent{id: id}
	}
	return lockIdent{id: id, kind: e.kind, first: e.first, first2: e.first2, name: &e.name}
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
	// distinct pairs, or with DroppedRepeats also repeated acquires of
	// pairs not recorded.
	Dropped        uint64
	DroppedRepeats bool
	// Untracked counts acquires not tracked as held (a bucket's cells were
	// all taken): edges from them were missed.
	Untracked uint64
}

// TakeOrders copies the recorded edges.
func TakeOrders() Orders {
	orders.mu.Lock()
	es := orders.edges[:len(orders.edges):len(orders.edges)]
	o := Orders{Capacity: orders.max, Dropped: orders.dropped.Load(), DroppedRepeats: orders.droppedRepeats.Load(),
		Untracked: orders.untracked.Load()}
	orders.mu.Unlock()
	o.Edges = make([]Edge, 0, len(es))
	for _, e := range es {
		o.Edges = append(o.Edges, Edge{From: e.from.lock(), To: e.to.lock(), Goroutine: e.goid, FromSite: e.fromPC,
			FromSite2: e.fromPC2, FromStack: e.fromStack, ToStack: e.toStack, FromRead: e.fromRead, ToRead: e.toRead, Time: e.time})
	}
	return o
}

func (l lockIdent) lock() OrderLock {
	o := OrderLock{ID: l.id, Kind: l.kind, First: l.first, First2: l.first2}
	if l.name != nil {
		if n := l.name.Load(); n != nil {
			o.Name = *n
		}
	}
	return o
}

// EdgeCount returns how many edges are recorded and dropped: it changes
// when TakeOrders would tell something new.
func EdgeCount() (recorded int, dropped uint64) {
	orders.mu.Lock()
	defer orders.mu.Unlock()
	return len(orders.edges), orders.dropped.Load()
}

// EdgeAdded returns a channel that has a token after an edge is recorded
// (one token for any number of edges since it was last drained).
func EdgeAdded() <-chan struct{} { return orders.added }
