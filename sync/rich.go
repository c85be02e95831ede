//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	gosync "sync"
	"sync/atomic"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// The records mode (records true): every hold, reader and waiter in the
// records of internal/rt/inproc, and the lock-order edges. Each function
// here is its own frame (go:noinline), because callerInfo reads the
// return addresses above it through the frame pointers; siteOf makes them
// the program's. They are go:norace: the records they write (the lock's
// owner word, the holder record, the held-lock bucket) are invisible to the
// race detector. sync's methods they call keep their race annotations.

// holdOwner is the owner word of hold h (inproc.Hold's result).
func holdOwner(h uint32) int64 { return ownerRecord | int64(h) }

// heldRecord is the hold in owner word o, if it is one (0 if not).
func heldRecord(o int64) uint32 {
	if o >= 0 {
		return 0
	}
	return uint32(o)
}

// unhold ends the records-mode hold in owner word o (negative), if any.
//
//go:norace
func unhold(o int64) {
	h := heldRecord(o)
	if h == 0 {
		return
	}
	g := inproc.Unhold(h)
	if b := inproc.BucketOf(g); !b.UnholdOnly(inproc.WriteCell(h)) {
		b.Unhold(inproc.WriteCell(h))
	}
}

// goidSite is the current goroutine's id and the program's site of the
// lock call, for a records function that called callerInfo(…, len(pcs)).
// The search starts at the first return address: it is the drop-in's
// (userPC answers 0 for it) unless the public method that called the
// records function was inlined into the program (a PGO build inlines
// RWMutex.Lock and the TryLocks at hot sites), and then it is the
// program's own call site.
//
//go:norace
func goidSite(goid int64, pcs *framePCs) (int64, uintptr, uintptr) {
	if goid == 0 {
		goid = record.Goid()
	}
	pc, pc2 := siteOf(pcs)
	return goid, pc, pc2
}

//go:norace
func held(p unsafe.Pointer, op *int64, kind inproc.Kind, goid int64, pc, pc2 uintptr) {
	addr := uintptr(p)
	h := inproc.Hold(addr, kind, goid, pc, pc2, 0, 0)
	*op = holdOwner(h)
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), addr, goid)
	}
}

//go:noinline
//go:norace
func (m *Mutex) lockRecords() {
	inproc.Escape(m)
	var pcs framePCs
	goid, pc, pc2 := goidSite(callerInfo(goidOff, &pcs, len(pcs)), &pcs)
	if !m.mu.TryLock() {
		lockSlow(&m.mu, unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
		return
	}
	held(unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
}

//go:noinline
//go:norace
func (m *Mutex) tryLockRecords() bool {
	inproc.Escape(m)
	var pcs framePCs
	goid, pc, pc2 := goidSite(callerInfo(goidOff, &pcs, len(pcs)), &pcs)
	if !m.mu.TryLock() {
		return false
	}
	held(unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
	return true
}

//go:noinline
//go:norace
func (rw *RWMutex) lockRecords() {
	inproc.Escape(rw)
	var pcs framePCs
	goid, pc, pc2 := goidSite(callerInfo(goidOff, &pcs, len(pcs)), &pcs)
	if !rw.std().TryLock() {
		lockSlow(rw.std(), unsafe.Pointer(rw), &rw.owner, inproc.KindRWMutex, goid, pc, pc2)
		return
	}
	held(unsafe.Pointer(rw), &rw.owner, inproc.KindRWMutex, goid, pc, pc2)
}

//go:noinline
//go:norace
func (rw *RWMutex) tryLockRecords() bool {
	inproc.Escape(rw)
	var pcs framePCs
	goid, pc, pc2 := goidSite(callerInfo(goidOff, &pcs, len(pcs)), &pcs)
	if !rw.std().TryLock() {
		return false
	}
	held(unsafe.Pointer(rw), &rw.owner, inproc.KindRWMutex, goid, pc, pc2)
	return true
}

// lockSlow records the goroutine as a waiter, with its stack, then waits in
// l.Lock. Once it holds the lock, its waiter record becomes the holder's
// stack, until Unlock.
//
//go:noinline
//go:norace
func lockSlow(l gosync.Locker, p unsafe.Pointer, op *int64, kind inproc.Kind, goid int64, pc, pc2 uintptr) {
	var s record.Stack
	captureUser(&s, 2) // lockSlow, the lockRecords that called it
	addr := uintptr(p)
	now := record.Nanotime()
	inproc.Seen(heldRecord(*op), addr, now) // the holder, if its acquire has no time
	slot := inproc.Wait(addr, true, goid, now, &s)
	l.Lock()
	slot = inproc.Acquired(slot, true)
	h := inproc.Hold(addr, kind, goid, pc, pc2, record.Nanotime(), slot)
	*op = holdOwner(h)
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), addr, goid)
	}
}

// rlockRecords is RLock in the records mode, called by rlockSlowPath with
// the goroutine id and the return addresses above it (from the program's
// call of RLock, or from RLock's own frame when it was not inlined).
//
//go:norace
func (rw *RWMutex) rlockRecords(goid int64, pcs *framePCs) {
	inproc.Escape(rw)
	if goid == 0 {
		goid = record.Goid()
	}
	pc, pc2 := siteOf(pcs)
	if !rw.std().TryRLock() {
		rlockSlow(rw, goid)
	}
	rw.readLocked(goid, pc, pc2)
}

//go:noinline
//go:norace
func (rw *RWMutex) tryRLockRecords() bool {
	inproc.Escape(rw)
	var pcs framePCs
	goid, pc, pc2 := goidSite(callerInfo(goidOff, &pcs, len(pcs)), &pcs)
	if !rw.std().TryRLock() {
		return false
	}
	rw.readLocked(goid, pc, pc2)
	return true
}

//go:norace
func (rw *RWMutex) readLocked(goid int64, pc, pc2 uintptr) {
	addr := uintptr(unsafe.Pointer(rw))
	if !inproc.ReadLocked(addr, goid, pc, pc2) {
		addOver(&rw.owner, 1)
	}
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.ReadCell(addr)) {
		inproc.HoldNested(b, inproc.ReadCell(addr), addr, goid)
	}
}

// rlockSlow records the goroutine as waiting to read, with its stack, then
// waits in RLock.
//
//go:noinline
//go:norace
func rlockSlow(rw *RWMutex, goid int64) {
	var s record.Stack
	captureUser(&s, 2) // rlockSlow, rlockRecords
	now := record.Nanotime()
	inproc.Seen(heldRecord(rw.owner), uintptr(unsafe.Pointer(rw)), now) // the writer, if its acquire has no time
	slot := inproc.Wait(uintptr(unsafe.Pointer(rw)), false, goid, now, &s)
	rw.std().RLock()
	inproc.Acquired(slot, false)
}

// runlockRecords releases a reader record of rw (before sync's RUnlock).
//
//go:noinline
//go:norace
func (rw *RWMutex) runlockRecords() {
	goid := curGoid()
	if goid == 0 {
		goid = record.Goid()
	}
	addr := uintptr(unsafe.Pointer(rw))
	// The reader whose record was released: goroutine goid, or, for a read
	// lock released by another goroutine, its taker.
	held := int32(-1)
	if late {
		held = rw.readersHeld()
	}
	g, counted := inproc.ReadUnlocked(addr, goid, overOf(rw.owner), held, rw.readersHeld)
	if counted {
		addOver(&rw.owner, -1)
	}
	if g != 0 {
		if b := inproc.BucketOf(g); !b.UnholdOnly(inproc.ReadCell(addr)) {
			b.Unhold(inproc.ReadCell(addr))
		}
	}
}

// readersHeld is the number of readers sync counts holding rw, at least.
// Without a writer waiting it is sync's reader count. While one waits,
// that count also has the readers waiting behind the writer; readerWait
// is the readers the writer waits for, those that still hold (and a
// leaving reader whose record is already freed: never fewer), except
// between the writer's two additions, when it is 0 or less (it starts
// from 0, and a reader that holds, as the caller does, makes it at least
// 1 once added): then the reader count, waiting readers and all. Read locks taken in the owner
// mode have no record; runlockRecords compares this count with the
// records to tell whether any may still hold. Without sync's layout
// (rwLayout) it is not known: rwmutexMaxReaders, more than any records,
// so that no release frees another goroutine's record.
//
//go:norace
func (rw *RWMutex) readersHeld() int32 {
	const rwmutexMaxReaders = 1 << 30
	if !rwOK {
		return rwmutexMaxReaders
	}
	w := (*rwWords)(unsafe.Pointer(rw.std()))
	r := atomic.LoadInt32(&w.readers)
	if r >= 0 {
		return r
	}
	if n := atomic.LoadInt32(&w.readerWait); n > 0 {
		return n
	}
	return r + rwmutexMaxReaders
}

// The readers of an RWMutex that found no reader record are counted in its
// owner word, which is free while readers hold it (a writer's store and the
// readers' counts never overlap: sync orders them): ownerRecord | the
// count << 32, and 0 again when the count is 0, so that an unlocked RWMutex
// is all zeros.

// overOf is the count of readers without a record in owner word o.
func overOf(o int64) int32 {
	if o >= 0 || uint32(o) != 0 {
		return 0
	}
	return int32(uint64(o) >> 32 & 0x7fffffff)
}

// addOver adds d to the count in *op, unseen by the race detector.
//
//go:norace
func addOver(op *int64, d int32) {
	p := (*uint64)(unsafe.Pointer(op))
	for {
		old := *p
		n := overOf(int64(old)) + d
		var w uint64
		if n > 0 {
			w = 1<<63 | uint64(n)<<32 // ownerRecord | n << 32
		}
		if seqlock.CAS64(p, old, w) {
			return
		}
	}
}
