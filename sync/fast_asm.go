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

// lockRecordsAt is m.lockRecords with the return addresses above the
// program's call of Lock (pcs[1] on; pcs[0] is 0) and the goroutine id (0:
// not known) read by lockRecordsEntry. pcs is on lockRecordsEntry's frame.
//
//lint:ignore U1000 called from the assembly (fast_amd64.s)
//go:noinline
//go:norace
func lockRecordsAt(m *Mutex, pcs *framePCs, goid int64) {
	inproc.Escape(m)
	if goid == 0 {
		goid = record.Goid()
	}
	// Lock inlined into the program's function, else called through an
	// interface or a method value (Lock's frame or the method value's),
	// else the first that is the program's.
	pc, pc2 := userPC(pcs[1]), pcs[2]
	if pc == 0 {
		pc, pc2 = siteOf(pcs, 2)
	}
	if !m.mu.TryLock() {
		lockSlow(&m.mu, unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
		return
	}
	held(unsafe.Pointer(m), &m.owner, inproc.KindMutex, goid, pc, pc2)
}
