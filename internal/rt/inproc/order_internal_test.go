package inproc

import (
	"testing"
	"unsafe"
)

// fakeLock stands for a drop-in Mutex: its address is the lock's, h its
// holder record.
type fakeLock struct{ h uint32 }

// keep makes the fake locks escape, as sync's Lock makes a drop-in
// mutex escape (inproc.Escape).
var keep []any

func (l *fakeLock) ID() uint64 { return uint64(uintptr(unsafe.Pointer(l))) }

// lockAs and unlockAs play a drop-in lock's records for goroutine goid, as
// sync's Lock and Unlock write them.
func lockAs(l *fakeLock, goid int64) {
	addr := uintptr(unsafe.Pointer(l))
	l.h = Hold(addr, KindMutex, goid, 0, 0, 0, 0)
	if b := BucketOf(goid); !b.HoldFirst(WriteCell(l.h)) {
		HoldNested(b, WriteCell(l.h), addr, goid)
	}
}

func unlockAs(l *fakeLock, goid int64) {
	h := l.h
	l.h = 0
	Unhold(h)
	if b := BucketOf(goid); !b.UnholdOnly(WriteCell(h)) {
		b.Unhold(WriteCell(h))
	}
}

// TestEdgeTableFull: past its capacity the table records no new edge and
// counts each distinct one dropped once, however often it is taken; the
// edges recorded before stay.
func TestEdgeTableFull(t *testing.T) {
	lockOrders()
	base, old := len(orders.edges), orders.max
	orders.max = base + 10
	dropped0 := orders.dropped
	unlockOrders()
	defer func() {
		lockOrders()
		orders.max = old
		unlockOrders()
	}()

	const goid int64 = 1 << 40
	root := new(fakeLock)
	locks := make([]fakeLock, 30)
	keep = append(keep, root, locks) // on the heap: a stack may move
	for round := 0; round < 3; round++ {
		for i := range locks {
			lockAs(root, goid)
			lockAs(&locks[i], goid)
			unlockAs(&locks[i], goid)
			unlockAs(root, goid)
		}
	}
	o := TakeOrders()
	if len(o.Edges) != base+10 || o.Capacity != base+10 {
		t.Errorf("%d edges, capacity %d; want %d and %d", len(o.Edges), o.Capacity, base+10, base+10)
	}
	if got := o.Dropped - dropped0; got != 20 || o.DroppedRepeats {
		t.Errorf("dropped %d (repeats %v); want the 20 pairs past the capacity, once each", got, o.DroppedRepeats)
	}
	for _, e := range o.Edges[base:] {
		if e.From.ID != root.ID() || e.Goroutine != goid {
			t.Errorf("edge %d -> %d by %d; want from the root lock, goroutine %d", e.From.ID, e.To.ID, e.Goroutine, goid)
		}
	}
}

// TestUntracked: a goroutine that holds more locks than its bucket has
// cells has the rest counted, not tracked; releasing them all leaves the
// bucket empty.
func TestUntracked(t *testing.T) {
	const goid int64 = 1<<40 + 7
	locks := make([]fakeLock, heldCells+3)
	keep = append(keep, locks) // on the heap: a stack may move
	u0 := loadU64(&orders.untracked)
	for i := range locks {
		lockAs(&locks[i], goid)
	}
	if got := loadU64(&orders.untracked) - u0; got != 3 {
		t.Errorf("untracked %d; want 3", got)
	}
	for i := len(locks) - 1; i >= 0; i-- {
		unlockAs(&locks[i], goid)
	}
	if n := BucketOf(goid).InUse(); n != 0 {
		t.Errorf("%d cells still name a lock after every release", n)
	}
}
