//go:build !nolockwatch

package sync

import (
	gosync "sync"
	"sync/atomic"

	"github.com/lockwatch/lockwatch/internal/inproc"
	"github.com/lockwatch/lockwatch/internal/record"
)

// Enabled reports whether this build records holders: true unless built
// with the nolockwatch tag.
const Enabled = true

// A Mutex is a mutual exclusion lock. The zero value for a Mutex is an
// unlocked mutex.
//
// A Mutex must not be copied after first use.
//
// It is sync.Mutex, and it records who holds it: the holder's goroutine,
// where it called Lock, and since when; the goroutines that wait for it,
// with their stacks. lockwatch reads the records from outside the program
// (see the package documentation).
//
// A locked Mutex is not associated with a particular goroutine. It is
// allowed for one goroutine to lock a Mutex and then arrange for another
// goroutine to unlock it.
type Mutex struct {
	mu gosync.Mutex
	st inproc.State
}

// An RWMutex is a reader/writer mutual exclusion lock. The lock can be held
// by an arbitrary number of readers or a single writer. The zero value for
// an RWMutex is an unlocked mutex.
//
// An RWMutex must not be copied after first use.
//
// It is sync.RWMutex, with the records of Mutex for its writer and waiters,
// and for each reader its goroutine, where it called RLock and since when
// (the readers beyond the table's room are counted).
//
// If any goroutine calls Lock while the lock is already held by one or more
// readers, concurrent calls to RLock will block until the writer has
// acquired (and released) the lock, to ensure that the lock eventually
// becomes available to the writer. Note that this prohibits recursive
// read-locking: lockwatch reports a goroutine that does it while a writer
// waits as a self-deadlock.
type RWMutex struct {
	rw gosync.RWMutex
	st inproc.State
}

// goidOff is the offset of the goroutine id in the runtime's g, once
// internal/record found and verified it; 0 before, or if it was not found.
var goidOff atomic.Uintptr

// goidSlow returns the goroutine id when callerInfo could not (the offset
// is not known yet, or was not found), and learns the offset.
//
//go:noinline
func goidSlow() int64 {
	if off, ok := record.GoidOffset(); ok {
		goidOff.Store(off)
	}
	return record.Goid()
}

// The entry points below repeat their few lines of recording on purpose.
// Each is its own frame (go:noinline), because callerInfo reads its
// caller's PC through the frame pointer; and the steps after the lock is
// taken (the holder record and the held-lock bucket) and Unlock's, written
// once as helpers, are too large to inline: a helper call cost Lock+Unlock
// 3.5% (18.65 -> 19.30 ns, p=0.015, 6 interleaved counts of
// BenchmarkLockUnlock, 2026-11-26), on the path every program takes.

// Lock locks m. If the lock is already in use, the calling goroutine blocks
// until the mutex is available.
//
//go:noinline
func (m *Mutex) Lock() {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if !m.st.Registered() {
		inproc.Register(&m.st, inproc.KindMutex, pc, pc2)
	}
	if !m.mu.TryLock() {
		lockSlow(&m.mu, &m.st, goid, pc, pc2)
		return
	}
	m.st.Holder.Set(goid, pc, pc2, record.Coarse(), 0)
	if b := inproc.BucketOf(goid); !b.HoldFirst(&m.st) {
		b.Hold(&m.st, goid)
	}
}

// lockSlow records the goroutine as a waiter, with its stack, then waits in
// l.Lock. Once it holds the lock, its waiter record becomes the holder's
// stack, until Unlock.
//
//go:noinline
func lockSlow(l gosync.Locker, st *inproc.State, goid int64, pc, pc2 uintptr) {
	var s record.Stack
	s.Capture(1) // from the caller of Lock
	slot := inproc.Wait(st, true, goid, record.Coarse(), &s)
	l.Lock()
	slot = inproc.Acquired(slot, true)
	st.Holder.Set(goid, pc, pc2, record.Coarse(), slot)
	if b := inproc.BucketOf(goid); !b.HoldFirst(st) {
		b.Hold(st, goid)
	}
}

// TryLock tries to lock m and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:noinline
func (m *Mutex) TryLock() bool {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if !m.st.Registered() {
		inproc.Register(&m.st, inproc.KindMutex, pc, pc2)
	}
	if !m.mu.TryLock() {
		return false
	}
	m.st.Holder.Set(goid, pc, pc2, record.Coarse(), 0)
	if b := inproc.BucketOf(goid); !b.HoldFirst(&m.st) {
		b.Hold(&m.st, goid)
	}
	return true
}

// Unlock unlocks m. It is a run-time error if m is not locked on entry to
// Unlock: the same unrecoverable "fatal error: sync: unlock of unlocked
// mutex" as sync.Mutex's.
func (m *Mutex) Unlock() {
	g := m.st.Holder.Goroutine()
	if slot := m.st.Holder.Clear(); slot != 0 {
		inproc.Release(slot)
	}
	if b := inproc.BucketOf(g); !b.UnholdOnly(&m.st) {
		b.Unhold(&m.st)
	}
	m.mu.Unlock()
}

// Lock locks rw for writing. If the lock is already locked for reading or
// writing, Lock blocks until the lock is available.
//
//go:noinline
func (rw *RWMutex) Lock() {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if !rw.st.Registered() {
		inproc.Register(&rw.st, inproc.KindRWMutex, pc, pc2)
	}
	if !rw.rw.TryLock() {
		lockSlow(&rw.rw, &rw.st, goid, pc, pc2)
		return
	}
	rw.st.Holder.Set(goid, pc, pc2, record.Coarse(), 0)
	if b := inproc.BucketOf(goid); !b.HoldFirst(&rw.st) {
		b.Hold(&rw.st, goid)
	}
}

// TryLock tries to lock rw for writing and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:noinline
func (rw *RWMutex) TryLock() bool {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if !rw.st.Registered() {
		inproc.Register(&rw.st, inproc.KindRWMutex, pc, pc2)
	}
	if !rw.rw.TryLock() {
		return false
	}
	rw.st.Holder.Set(goid, pc, pc2, record.Coarse(), 0)
	if b := inproc.BucketOf(goid); !b.HoldFirst(&rw.st) {
		b.Hold(&rw.st, goid)
	}
	return true
}

// Unlock unlocks rw for writing. It is a run-time error if rw is not
// locked for writing on entry to Unlock: the same unrecoverable error as
// sync.RWMutex's.
//
// As with Mutexes, a locked RWMutex is not associated with a particular
// goroutine. One goroutine may RLock (Lock) a RWMutex and then arrange for
// another goroutine to RUnlock (Unlock) it.
func (rw *RWMutex) Unlock() {
	g := rw.st.Holder.Goroutine()
	if slot := rw.st.Holder.Clear(); slot != 0 {
		inproc.Release(slot)
	}
	if b := inproc.BucketOf(g); !b.UnholdOnly(&rw.st) {
		b.Unhold(&rw.st)
	}
	rw.rw.Unlock()
}

// RLock locks rw for reading.
//
// It should not be used for recursive read locking; a blocked Lock call
// excludes new readers from acquiring the lock. See the documentation on
// the RWMutex type.
//
//go:noinline
func (rw *RWMutex) RLock() {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	rw.rlock(goid, pc, pc2)
}

// rlock is RLock after callerInfo; not inlined, so that rlockSlow knows
// how many frames to skip.
//
//go:noinline
func (rw *RWMutex) rlock(goid int64, pc, pc2 uintptr) {
	if goid == 0 {
		goid = goidSlow()
	}
	if !rw.st.Registered() {
		inproc.Register(&rw.st, inproc.KindRWMutex, pc, pc2)
	}
	if !rw.rw.TryRLock() {
		rlockSlow(rw, goid)
	}
	inproc.ReadLocked(&rw.st, rw.st.ID(), goid, pc, pc2, record.Coarse())
	if b := inproc.BucketOf(goid); !b.HoldFirst(&rw.st) {
		b.Hold(&rw.st, goid)
	}
}

// rlockSlow records the goroutine as waiting to read, with its stack, then
// waits in RLock.
//
//go:noinline
func rlockSlow(rw *RWMutex, goid int64) {
	var s record.Stack
	s.Capture(2) // from the caller of RLock (rlock is between)
	slot := inproc.Wait(&rw.st, false, goid, record.Coarse(), &s)
	rw.rw.RLock()
	inproc.Acquired(slot, false)
}

// TryRLock tries to lock rw for reading and reports whether it succeeded.
//
// Note that while correct uses of TryRLock do exist, they are rare, and use
// of TryRLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:noinline
func (rw *RWMutex) TryRLock() bool {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if !rw.st.Registered() {
		inproc.Register(&rw.st, inproc.KindRWMutex, pc, pc2)
	}
	if !rw.rw.TryRLock() {
		return false
	}
	inproc.ReadLocked(&rw.st, rw.st.ID(), goid, pc, pc2, record.Coarse())
	if b := inproc.BucketOf(goid); !b.HoldFirst(&rw.st) {
		b.Hold(&rw.st, goid)
	}
	return true
}

// RUnlock undoes a single RLock call; it does not affect other
// simultaneous readers. It is a run-time error if rw is not locked for
// reading on entry to RUnlock: the same unrecoverable error as
// sync.RWMutex's.
//
//go:noinline
func (rw *RWMutex) RUnlock() {
	goid, _, _ := callerInfo(goidOff.Load())
	if goid == 0 {
		goid = goidSlow()
	}
	if id := rw.st.ID(); id != 0 {
		// The reader whose record was released: goroutine goid, or, for a
		// read lock released by another goroutine, its taker.
		if b := inproc.BucketOf(inproc.ReadUnlocked(&rw.st, id, goid)); !b.UnholdOnly(&rw.st) {
			b.Unhold(&rw.st)
		}
	}
	rw.rw.RUnlock()
}

// RLocker returns a Locker interface that implements the Lock and Unlock
// methods by calling rw.RLock and rw.RUnlock.
func (rw *RWMutex) RLocker() Locker { return (*rlocker)(rw) }

type rlocker RWMutex

//go:noinline
func (r *rlocker) Lock() {
	goid, pc, pc2 := callerInfo(goidOff.Load())
	(*RWMutex)(r).rlock(goid, pc, pc2)
}

func (r *rlocker) Unlock() { (*RWMutex)(r).RUnlock() }

// SetName gives m a name for lockwatch's reports, in place of the site of
// its first Lock: worth it for the few locks one looks for by name. It may
// be called at any time, also before the first Lock; the last name given
// wins. It allocates.
func SetName[M *Mutex | *RWMutex](m M, name string) {
	switch m := any(m).(type) {
	case *Mutex:
		inproc.SetName(&m.st, inproc.KindMutex, name)
	case *RWMutex:
		inproc.SetName(&m.st, inproc.KindRWMutex, name)
	}
}
