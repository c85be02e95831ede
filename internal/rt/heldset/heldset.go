// Package heldset tracks which locks the goroutines of a process hold, for
// lock-order edges (docs/lock-order.md), without a lock and without an
// atomic read-modify-write: lockreg's locks and the drop-in's share it.
//
// A table of buckets is chosen by goroutine id; each bucket has a count n
// and cells, each a nonzero value naming a lock held by a goroutine of the
// bucket (what a cell holds is the user's: a lock index, a holder record, an
// address), 0 when free. An acquire reads its bucket and stores its cell
// into a free one; the release clears it, in the bucket of the goroutine
// that took the lock (the lock's records name it, whoever unlocks). In an
// empty bucket (a goroutine that holds nothing, the common case) the acquire
// is a load and two stores, and the release a compare and two stores.
//
// The stores are plain (unseen by the race detector, like every record), not
// CASes: two goroutines of one bucket that store into the same free cell at
// the same moment lose one of the two cells, and the edges from that lock are
// missed until it is taken again; racing goroutines may leave n off: too
// high, and the next acquire scans and counts again; too low (0 while a cell
// is in use), and an acquire takes cell 0 without looking at the others.
// Either way an edge may be missed, never invented, because no cell is taken
// for an edge on its own word: the user calls it one only if the lock's own
// records say its goroutine holds it, checked at each nested acquire (the
// nested function Hold calls).
package heldset

// Cells are the cells of a bucket: 7 fill one cache line with the count,
// 15 two.
type Cells interface{ [7]uint64 | [15]uint64 }

// A Bucket is the cells of the goroutines whose ids fall in it. Its zero
// value is empty.
type Bucket[A Cells] struct {
	n     uint32 // cells in use as the bucket's goroutines last wrote it
	_     uint32
	cells A
}

// A Table is a process's buckets. Its zero value is empty; it is safe for
// concurrent use in the sense above (an edge may be missed, never invented).
type Table[A Cells] [1 << bucketBits]Bucket[A]

const bucketBits = 10

// Of returns goroutine goid's bucket.
func (t *Table[A]) Of(goid int64) *Bucket[A] {
	return &t[(uint64(goid)*0x9e3779b97f4a7c15)>>(64-bucketBits)]
}

// An acquire that succeeded, with the lock's records written, calls
//
//	if b := table.Of(goid); !b.HoldFirst(cell) {
//		if !b.Hold(cell, nested) { /* count the lock untracked */ }
//	}
//
// to call nested for each other cell of the bucket (an edge, if its lock is
// this goroutine's), then mark the lock held. HoldFirst is inlined.

// HoldFirst marks cell held in an empty bucket and reports whether the
// bucket was empty.
//
//go:norace
func (b *Bucket[A]) HoldFirst(cell uint64) bool {
	if b.n != 0 {
		return false
	}
	b.cells[0] = cell
	b.n = 1
	return true
}

// Hold is the acquire in a bucket with cells in use: it calls nested with
// each cell in use other than cell, takes a free cell for cell, and counts
// n again. It reports false if no cell was free: the lock is not tracked,
// and edges from it are missed while it is held.
//
//go:norace
//go:noinline
func (b *Bucket[A]) Hold(cell uint64, nested func(c uint64)) (tracked bool) {
	free, n := -1, uint32(0)
	for i := 0; i < len(b.cells); i++ {
		c := b.cells[i]
		if c == 0 {
			if free < 0 {
				free = i
			}
			continue
		}
		n++
		if c != cell {
			nested(c)
		}
	}
	if free < 0 {
		b.n = n
		return false
	}
	b.cells[free] = cell
	b.n = n + 1
	return true
}

// The release of a lock held by goroutine goid (the lock's records name
// it; not necessarily the releaser), once its records are cleared, calls
//
//	if b := table.Of(goid); !b.UnholdOnly(cell) {
//		b.Unhold(cell)
//	}

// UnholdOnly clears the bucket if cell is its one cell, and reports whether
// it did.
//
//go:norace
func (b *Bucket[A]) UnholdOnly(cell uint64) bool {
	if b.cells[0] != cell || b.n != 1 {
		return false
	}
	b.cells[0] = 0
	b.n = 0
	return true
}

// Unhold clears the cell, if the bucket has it, and counts the cells in use
// again.
//
//go:norace
//go:noinline
func (b *Bucket[A]) Unhold(cell uint64) {
	cleared, n := false, uint32(0)
	for i := 0; i < len(b.cells); i++ {
		switch c := b.cells[i]; {
		case c == 0:
		case c == cell && !cleared:
			b.cells[i] = 0
			cleared = true
		default:
			n++
		}
	}
	b.n = n
}

// InUse returns the number of cells in use.
//
//go:norace
func (b *Bucket[A]) InUse() int {
	n := 0
	for i := 0; i < len(b.cells); i++ {
		if b.cells[i] != 0 {
			n++
		}
	}
	return n
}
