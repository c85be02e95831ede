package inproc

import (
	"testing"
	"unsafe"
)

// readSlotOf returns the reader record of goroutine goid for the lock at
// addr, as ReadUnlocked finds it.
func readSlotOf(t *testing.T, addr uintptr, goid int64) *readSlot {
	t.Helper()
	h := readHash(addr, goid)
	for p := uint64(0); p < readProbes; p++ {
		if r := &reading().readers[(h+p)&(readSlots-1)]; r.key == uint64(addr) && r.goid == goid {
			return r
		}
	}
	t.Fatalf("no reader record of goroutine %d", goid)
	return nil
}

// TestFreeReadOnce: a reader record is freed by one release only. Two
// RUnlocks of one RWMutex may race for one record (a read lock may be
// released by another goroutine than its taker, which frees any record of
// the lock); the second releaser read the record's goroutine before the
// first emptied it. It is caught here at the moment the first has emptied
// the record (goroutine 0, its write ended) and not yet freed the key: the
// record is dead, and the second must not free it again (it would report a
// read lock released that was not, and its late key store could wipe a
// new reader's record).
func TestFreeReadOnce(t *testing.T) {
	l := new(fakeLock)
	keep = append(keep, l)
	addr := uintptr(unsafe.Pointer(l))
	const g = 4101
	if !ReadLocked(addr, g, 1, 2) {
		t.Fatal("no free reader slot")
	}
	r := readSlotOf(t, addr, g)

	// The first releaser has claimed the record, emptied it and ended its
	// write; its key store is still to come.
	end := r.seq.Begin()
	r.goid = 0
	r.seq.End(end)
	if r.key != uint64(addr) {
		t.Fatal("the key changed")
	}
	if got, ok := freeRead(r, addr, 0); ok {
		t.Errorf("a releaser of any record of the lock freed the emptied record again (goroutine %d)", got)
	}
	if got, ok := freeRead(r, addr, g); ok {
		t.Errorf("the taker's own release freed the emptied record again (goroutine %d)", got)
	}
	r.key = 0 // the first releaser's key store

	// A live record is freed once, and names its goroutine.
	if !ReadLocked(addr, g, 1, 2) {
		t.Fatal("no free reader slot")
	}
	r = readSlotOf(t, addr, g)
	if got, ok := freeRead(r, addr, 0); !ok || got != g {
		t.Fatalf("freeing a live record: goroutine %d, %v; want %d, true", got, ok, g)
	}
	if r.key != 0 {
		t.Error("a freed record kept its key")
	}
	if got, ok := freeRead(r, addr, 0); ok {
		t.Errorf("a freed record was freed again (goroutine %d)", got)
	}
}

// TestRecordReadsAllocateNothing: a nested acquire reads the holder or
// reader record of each lock its goroutine holds (heldBy): the reads must
// not allocate.
func TestRecordReadsAllocateNothing(t *testing.T) {
	l := new(fakeLock)
	keep = append(keep, l)
	addr := uintptr(unsafe.Pointer(l))
	const g = 4102
	h := Hold(addr, KindMutex, g, 1, 2, 0, 0)
	defer Unhold(h)
	if !ReadLocked(addr, g, 1, 2) {
		t.Fatal("no free reader slot")
	}
	defer ReadUnlocked(addr, g, 0, -1, nil)
	if n := testing.AllocsPerRun(100, func() {
		if ok, _, _, _, _, _, _ := heldBy(WriteCell(h), g); !ok {
			t.Error("the hold is not found")
		}
		if ok, _, _, _, _, _, _ := heldBy(ReadCell(addr), g); !ok {
			t.Error("the read hold is not found")
		}
	}); n != 0 {
		t.Errorf("reading the records allocated %v times; want 0", n)
	}
}
