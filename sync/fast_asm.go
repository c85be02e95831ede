//go:build !nolockwatch && amd64 && !race

package sync

import (
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// raceOn says the fast paths are on: this build has no race detector.
const raceOn = false

// lockFast is Lock's fast path (fast_amd64.s), else lockSlowPathOf. Its
// argument escapes, as sync's Lock's does (the slow path may wait on it,
// and record it in the records mode).
func lockFast(m *Mutex)

// lockSlowPathOf is m.lockSlowPath, for the assembly (the records mode
// enters the records by lockRecordsEntry).
//
//lint:ignore U1000 called from the assembly (fast_amd64.s)
//go:norace
func lockSlowPathOf(m *Mutex) { m.lockSlowPath() }

// lockRecordsEntry is Lock in the records mode, jumped to by lockFast: it
// reads the return addresses above the program's call of Lock and calls
// lockRecordsAt (fast_amd64.s).
//
//lint:ignore U1000 jumped to from the assembly (fast_amd64.s)
func lockRecordsEntry(m *Mutex)

// lockRecordsAt is m.lockRecords with the return address r of the call
// of Lock's assembly, the frame pointer fp of the function that made it,
// and the goroutine id (0: not known), read by lockRecordsEntry.
//
//lint:ignore U1000 called from the assembly (fast_amd64.s)
//go:noinline
//go:norace
func lockRecordsAt(m *Mutex, r uintptr, fp unsafe.Pointer, goid int64) {
	inproc.Escape(m)
	if goid == 0 {
		goid = record.Goid()
	}
	pc, pc2 := siteAbove(r, fp)
	if !m.mu.TryLock() {
		lockSlow(&m.mu, unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
		return
	}
	held(unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
}

// siteAbove is the site of a lock call from r, a return address into the
// function whose frame pointer is fp, and the frames above it: the first
// of r and the return addresses above that is the program's (Lock inlined
// into the program's function: r itself; called through an interface or
// a method value: one or two frames up), and the one after it. It reads
// the frames as far as it needs, through fp, a pointer (not an address),
// so that it stays right if the stack moves meanwhile (the runtime adjusts
// pointers into a stack it moves, and the frame pointers saved in it).
//
//go:norace
func siteAbove(r uintptr, fp unsafe.Pointer) (pc, pc2 uintptr) {
	for range len(framePCs{}) - 1 {
		if r == 0 {
			break
		}
		next := uintptr(0) // fp's frame's return address
		if fp != nil {
			next = *(*uintptr)(unsafe.Add(fp, 8))
		}
		if u := userPC(r); u != 0 {
			return u, next
		}
		if fp == nil {
			break
		}
		// The chain runs towards higher addresses; a link that does
		// not (its end, nil) ends it.
		if up := *(*unsafe.Pointer)(fp); uintptr(up) > uintptr(fp) {
			fp = up
		} else {
			fp = nil
		}
		r = next
	}
	return 0, 0
}
