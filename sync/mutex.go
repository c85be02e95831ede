//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	gosync "sync"

	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
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
	// h is, while the mutex is held for writing, its holder record
	// (inproc.Hold's result); 0 when unlocked, so that an unlocked Mutex
	// is all zeros, as sync's is.
	h uint32
	_ uint32
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
	h  uint32 // as Mutex's
	// over counts the readers that found no reader record.
	over int32
}

// goidOff is the offset of the goroutine id in the runtime's g, found and
// verified by internal/rt/record when the package initializes; 0 if it was not
// found (then record.Goid). Set before main, so reading it is no
// synchronisation between the program's goroutines.
var goidOff uintptr

func init() {
	if off, ok := record.GoidOffset(); ok {
		goidOff = off
	}
}

// The entry points below repeat their few lines of recording on purpose:
// each is its own frame (go:noinline), because callerInfo reads its
// caller's PC through the frame pointer. They are go:norace: the records
// they write (the lock's h, the holder record, the held-lock bucket) are
// invisible to the race detector, which sees only sync's own
// synchronisation, as with sync. sync's methods they call keep their race
// annotations.

// Lock locks m. If the lock is already in use, the calling goroutine blocks
// until the mutex is available.
//
//go:noinline
//go:norace
func (m *Mutex) Lock() {
	inproc.Escape(m)
	goid, pc, pc2 := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	if !m.mu.TryLock() {
		lockSlow(&m.mu, unsafe.Pointer(m), &m.h, inproc.KindMutex, goid, pc, pc2)
		return
	}
	h := inproc.Hold(uintptr(unsafe.Pointer(m)), inproc.KindMutex, goid, pc, pc2, 0, 0)
	m.h = h
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), uintptr(unsafe.Pointer(m)), goid)
	}
}

// lockSlow records the goroutine as a waiter, with its stack, then waits in
// l.Lock. Once it holds the lock, its waiter record becomes the holder's
// stack, until Unlock.
//
//go:noinline
//go:norace
func lockSlow(l gosync.Locker, p unsafe.Pointer, hp *uint32, kind inproc.Kind, goid int64, pc, pc2 uintptr) {
	var s record.Stack
	s.Capture(1) // from the caller of Lock
	addr := uintptr(p)
	now := record.Nanotime()
	inproc.Seen(*hp, addr, now) // the holder, if its acquire has no time
	slot := inproc.Wait(addr, true, goid, now, &s)
	l.Lock()
	slot = inproc.Acquired(slot, true)
	h := inproc.Hold(addr, kind, goid, pc, pc2, record.Nanotime(), slot)
	*hp = h
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), addr, goid)
	}
}

// TryLock tries to lock m and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:noinline
//go:norace
func (m *Mutex) TryLock() bool {
	inproc.Escape(m)
	goid, pc, pc2 := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	if !m.mu.TryLock() {
		return false
	}
	h := inproc.Hold(uintptr(unsafe.Pointer(m)), inproc.KindMutex, goid, pc, pc2, 0, 0)
	m.h = h
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), uintptr(unsafe.Pointer(m)), goid)
	}
	return true
}

// Unlock unlocks m. It is a run-time error if m is not locked on entry to
// Unlock: the same unrecoverable "fatal error: sync: unlock of unlocked
// mutex" as sync.Mutex's.
//
//go:norace
func (m *Mutex) Unlock() {
	if h := m.h; h != 0 {
		m.h = 0
		g := inproc.Unhold(h)
		if b := inproc.BucketOf(g); !b.UnholdOnly(inproc.WriteCell(h)) {
			b.Unhold(inproc.WriteCell(h))
		}
	}
	m.mu.Unlock()
}

// Lock locks rw for writing. If the lock is already locked for reading or
// writing, Lock blocks until the lock is available.
//
//go:noinline
//go:norace
func (rw *RWMutex) Lock() {
	inproc.Escape(rw)
	goid, pc, pc2 := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	if !rw.rw.TryLock() {
		lockSlow(&rw.rw, unsafe.Pointer(rw), &rw.h, inproc.KindRWMutex, goid, pc, pc2)
		return
	}
	h := inproc.Hold(uintptr(unsafe.Pointer(rw)), inproc.KindRWMutex, goid, pc, pc2, 0, 0)
	rw.h = h
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), uintptr(unsafe.Pointer(rw)), goid)
	}
}

// TryLock tries to lock rw for writing and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:noinline
//go:norace
func (rw *RWMutex) TryLock() bool {
	inproc.Escape(rw)
	goid, pc, pc2 := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	if !rw.rw.TryLock() {
		return false
	}
	h := inproc.Hold(uintptr(unsafe.Pointer(rw)), inproc.KindRWMutex, goid, pc, pc2, 0, 0)
	rw.h = h
	if b := inproc.BucketOf(goid); !b.HoldFirst(inproc.WriteCell(h)) {
		inproc.HoldNested(b, inproc.WriteCell(h), uintptr(unsafe.Pointer(rw)), goid)
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
//
//go:norace
func (rw *RWMutex) Unlock() {
	if h := rw.h; h != 0 {
		rw.h = 0
		g := inproc.Unhold(h)
		if b := inproc.BucketOf(g); !b.UnholdOnly(inproc.WriteCell(h)) {
			b.Unhold(inproc.WriteCell(h))
		}
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
//go:norace
func (rw *RWMutex) RLock() {
	inproc.Escape(rw)
	goid, pc, pc2 := callerInfo(goidOff)
	rw.rlock(goid, pc, pc2)
}

// rlock is RLock after callerInfo; not inlined, so that rlockSlow knows
// how many frames to skip.
//
//go:noinline
//go:norace
func (rw *RWMutex) rlock(goid int64, pc, pc2 uintptr) {
	if goid == 0 {
		goid = record.Goid()
	}
	if !rw.rw.TryRLock() {
		rlockSlow(rw, goid)
	}
	rw.readLocked(goid, pc, pc2)
}

//go:norace
func (rw *RWMutex) readLocked(goid int64, pc, pc2 uintptr) {
	addr := uintptr(unsafe.Pointer(rw))
	if !inproc.ReadLocked(addr, goid, pc, pc2) {
		inproc.AddOver(&rw.over, 1)
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
	s.Capture(2) // from the caller of RLock (rlock is between)
	now := record.Nanotime()
	inproc.Seen(rw.h, uintptr(unsafe.Pointer(rw)), now) // the writer, if its acquire has no time
	slot := inproc.Wait(uintptr(unsafe.Pointer(rw)), false, goid, now, &s)
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
//go:norace
func (rw *RWMutex) TryRLock() bool {
	inproc.Escape(rw)
	goid, pc, pc2 := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	if !rw.rw.TryRLock() {
		return false
	}
	rw.readLocked(goid, pc, pc2)
	return true
}

// RUnlock undoes a single RLock call; it does not affect other
// simultaneous readers. It is a run-time error if rw is not locked for
// reading on entry to RUnlock: the same unrecoverable error as
// sync.RWMutex's.
//
//go:noinline
//go:norace
func (rw *RWMutex) RUnlock() {
	goid, _, _ := callerInfo(goidOff)
	if goid == 0 {
		goid = record.Goid()
	}
	addr := uintptr(unsafe.Pointer(rw))
	// The reader whose record was released: goroutine goid, or, for a read
	// lock released by another goroutine, its taker.
	g, counted := inproc.ReadUnlocked(addr, goid, rw.over)
	if counted {
		inproc.AddOver(&rw.over, -1)
	}
	if g != 0 {
		if b := inproc.BucketOf(g); !b.UnholdOnly(inproc.ReadCell(addr)) {
			b.Unhold(inproc.ReadCell(addr))
		}
	}
	rw.rw.RUnlock()
}

// RLocker returns a Locker interface that implements the Lock and Unlock
// methods by calling rw.RLock and rw.RUnlock.
func (rw *RWMutex) RLocker() Locker { return (*rlocker)(rw) }

type rlocker RWMutex

//go:noinline
//go:norace
func (r *rlocker) Lock() {
	inproc.Escape(r)
	goid, pc, pc2 := callerInfo(goidOff)
	(*RWMutex)(r).rlock(goid, pc, pc2)
}

func (r *rlocker) Unlock() { (*RWMutex)(r).RUnlock() }

// SetName gives m a name for lockwatch's reports, in place of the site
// where it is held: worth it for the few locks one looks for by name. It
// may be called at any time, also before the first Lock; the last name
// given wins. Names are kept to inproc.NameMax (104) bytes. The first name
// given to a mutex allocates (a cleanup forgets it when the mutex is
// collected).
func SetName[M *Mutex | *RWMutex](m M, name string) {
	switch m := any(m).(type) {
	case *Mutex:
		inproc.SetName(unsafe.Pointer(m), inproc.KindMutex, name)
	case *RWMutex:
		inproc.SetName(unsafe.Pointer(m), inproc.KindRWMutex, name)
	}
}
