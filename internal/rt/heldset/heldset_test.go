package heldset

import "testing"

// TestBucket: cells are taken and cleared, nested sees every other cell in
// use, a full bucket leaves the lock untracked, and releasing everything
// empties it; for both sizes.
func TestBucket(t *testing.T) {
	t.Run("7", func(t *testing.T) { testBucket(t, &Table[[7]uint64]{}, 7) })
	t.Run("15", func(t *testing.T) { testBucket(t, &Table[[15]uint64]{}, 15) })
}

func testBucket[A Cells](t *testing.T, tab *Table[A], cells int) {
	b := tab.Of(42)
	if tab.Of(42) != b || tab.Of(43) == b {
		t.Fatal("Of does not choose a bucket by goroutine id")
	}
	if !b.HoldFirst(1) || b.HoldFirst(2) {
		t.Fatal("HoldFirst took a bucket in use, or not an empty one")
	}
	for c := uint64(2); c <= uint64(cells)+2; c++ {
		var seen []uint64
		tracked := b.Hold(c, func(o uint64) { seen = append(seen, o) })
		if want := int(min(c-1, uint64(cells))); len(seen) != want {
			t.Errorf("cell %d: nested saw %v; want the %d cells in use", c, seen, want)
		}
		if tracked != (c <= uint64(cells)) {
			t.Errorf("cell %d: tracked %v with %d cells", c, tracked, cells)
		}
	}
	if b.InUse() != cells {
		t.Errorf("%d cells in use; want %d", b.InUse(), cells)
	}
	if b.UnholdOnly(1) {
		t.Error("UnholdOnly cleared a bucket of several cells")
	}
	for c := uint64(1); c <= uint64(cells)+2; c++ {
		b.Unhold(c)
	}
	if b.InUse() != 0 || !b.HoldFirst(9) || !b.UnholdOnly(9) || b.InUse() != 0 {
		t.Error("the bucket is not empty and reusable after every release")
	}
}
