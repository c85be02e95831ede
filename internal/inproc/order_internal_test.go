package inproc

import "testing"

// lockAs and unlockAs play a drop-in lock's records for goroutine goid, as
// sync's Lock and Unlock write them.
func lockAs(s *State, goid int64) {
	Register(s, KindMutex, 0, 0)
	s.Holder.Set(goid, 0, 0, 0, 0)
	if b := BucketOf(goid); !b.HoldFirst(s) {
		b.Hold(s, goid)
	}
}

func unlockAs(s *State, goid int64) {
	s.Holder.Clear()
	if b := BucketOf(goid); !b.UnholdOnly(s) {
		b.Unhold(s)
	}
}

// TestEdgeTableFull: past its capacity the table records no new edge and
// counts each distinct one dropped once, however often it is taken; the
// edges recorded before stay.
func TestEdgeTableFull(t *testing.T) {
	orders.mu.Lock()
	base, old := len(orders.edges), orders.max
	orders.max = base + 10
	orders.mu.Unlock()
	defer func() {
		orders.mu.Lock()
		orders.max = old
		orders.mu.Unlock()
	}()
	dropped0 := orders.dropped.Load()

	const goid = 1 << 40
	root := new(State)
	locks := make([]State, 30)
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
	const goid = 1<<40 + 7
	locks := make([]State, heldCells+3)
	u0 := orders.untracked.Load()
	for i := range locks {
		lockAs(&locks[i], goid)
	}
	if got := orders.untracked.Load() - u0; got != 3 {
		t.Errorf("untracked %d; want 3", got)
	}
	for i := len(locks) - 1; i >= 0; i-- {
		unlockAs(&locks[i], goid)
	}
	for i := range bucketOf(goid).cells {
		if p := bucketOf(goid).cells[i].Load(); p != nil {
			t.Errorf("cell %d still names a lock after every release", i)
		}
	}
}
