//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	gosync "sync"
	"sync/atomic"
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
// It is sync.Mutex, and it records who holds it: the holder's goroutine id
// in the mutex itself, and, in the records mode, where it called Lock and
// since when, and the goroutines that wait for it, with their stacks.
// lockwatch reads them from outside the program (see the package
// documentation).
//
// A locked Mutex is not associated with a particular goroutine. It is
// allowed for one goroutine to lock a Mutex and then arrange for another
// goroutine to unlock it.
type Mutex struct {
	mu gosync.Mutex
	// owner is, while the mutex is held for writing, its holder: the
	// holder's goroutine id (> 0) in the owner mode, or ownerRecord | its
	// holder record (inproc.Hold's result) in the records mode; 0 when
	// unlocked, so that an unlocked Mutex is all zeros, as sync's is.
	owner int64
}

// An RWMutex is a reader/writer mutual exclusion lock. The lock can be held
// by an arbitrary number of readers or a single writer. The zero value for
// an RWMutex is an unlocked mutex.
//
// An RWMutex must not be copied after first use.
//
// It is sync.RWMutex, with the records of Mutex for its writer and waiters,
// and, in the records mode, for each reader its goroutine and where it
// called RLock (the readers beyond the table's room are counted).
//
// If any goroutine calls Lock while the lock is already held by one or more
// readers, concurrent calls to RLock will block until the writer has
// acquired (and released) the lock, to ensure that the lock eventually
// becomes available to the writer. Note that this prohibits recursive
// read-locking: lockwatch reports a goroutine that does it while a writer
// waits as a self-deadlock.
type RWMutex struct {
	rw rwWords
	// owner is the writer, as Mutex's; in the records mode, while readers
	// hold it and some of them found no reader record, ownerRecord | their
	// count << 32 (rich.go).
	owner int64
}

// ownerRecord marks an owner word that holds a holder record (records
// mode) rather than a goroutine id: the sign bit, which no goroutine id has.
const ownerRecord = -1 << 63

// records is whether the program keeps the full records (records mode).
// It is set when package inits run, before main: by this package's init
// (inproc.RecordsMode: the environment), or later by the probe's init
// (inproc.WantRecords). Go runs a package's init once its imports are
// initialized, in import path order, so a package that imports this one
// but not the probe may run its init before the probe's, in the owner
// mode, and lock: the switch can come after locks were taken. A Mutex or a
// writer lock is right across it (its owner word's sign tells its Unlock
// which mode took it); a read lock taken in the owner mode has no reader
// record, which runlockRecords allows for (late). Since it changes only
// before main, reading it is no synchronisation between the program's
// goroutines. In the owner mode (records false) a lock keeps only its
// writer's goroutine id.
var records bool

// late is whether the records mode was switched on after this package's
// init (by the probe's init, or a test), so that read locks taken in the
// owner mode, without a reader record, may still be held. Set before main.
var late bool

// goidOff is the offset of the goroutine id in the runtime's g, found and
// verified by internal/rt/record when the package initializes; 0 if it was
// not found (a Go release whose g the package does not know: then
// record.Goid, for the records). Set before main.
var goidOff uintptr

// The owner mode's variables, set by configure before main:
//
//   - ownerOn: the owner words are kept (the owner mode, and goidOff was
//     found). Without the goroutine id's offset no owner word is written:
//     record.Goid would cost more than the lock, and lockwatch then names
//     no holder from the word (it finds the waiters all the same).
//   - fastOff: goidOff when Mutex's fast paths may run too (ownerOn, no
//     race detector, and sync's Mutex laid out as they know); 0 otherwise,
//     when every Lock takes lockSlowPath. A Mutex keeps its owner word
//     when fastOff is set, or under the race detector when ownerOn is
//     (mutexOwner): Unlock's fast path, which a positive word takes,
//     changes sync's state word itself, and does not run under -race.
//   - rslow: RLock's and RUnlock's fast paths may not run (the records
//     mode, the race detector, or sync's RWMutex laid out otherwise).
var (
	ownerOn    bool
	mutexOwner bool
	fastOff    uintptr
	rwOK       bool // rwLayout(): sync's RWMutex is laid out as rwWords
	rslow      bool
)

func init() {
	if off, ok := record.GoidOffset(); ok {
		goidOff = off
	}
	rwOK = rwLayout()
	// The probe may ask for the records mode after this init, when it
	// initializes: still before main, but perhaps after other packages'
	// inits locked (records).
	records = inproc.OnRecords(func() {
		if !records {
			records, late = true, true
		}
		configure()
	})
	configure()
}

// configure sets the fast paths' variables for the mode.
//
//go:norace
func configure() {
	ownerOn = !records && goidOff != 0
	fastOff = 0
	if ownerOn && !raceOn && mutexLayout() {
		fastOff = goidOff
	}
	mutexOwner = fastOff != 0 || raceOn && ownerOn
	rslow = records || raceOn || !rwOK
}

// The fast paths change sync's state words themselves, as sync's own
// inlined fast paths do: a Mutex's state (int32, bit 0 locked) at its
// start, an RWMutex's reader count (int32) 16 bytes in. mutexLayout and
// rwLayout check, once, that sync's types are laid out so; if not, every
// call goes through sync's methods.

func mutexLayout() bool {
	var m gosync.Mutex
	st := (*int32)(unsafe.Pointer(&m))
	m.Lock()
	locked := atomic.LoadInt32(st)
	m.Unlock()
	return unsafe.Sizeof(m) == 8 && locked == 1 && atomic.LoadInt32(st) == 0
}

func rwLayout() bool {
	var rw gosync.RWMutex
	rc := readerCount(&rw)
	rw.RLock()
	one := atomic.LoadInt32(rc)
	rw.RUnlock()
	// The fast paths also rely on how sync uses the count: a writer makes
	// it negative, so that 0 means no writer holds or waits.
	rw.Lock()
	written := atomic.LoadInt32(rc)
	refused := !rw.TryRLock()
	rw.Unlock()
	return unsafe.Sizeof(rw) == 24 && one == 1 && written < 0 && refused && atomic.LoadInt32(rc) == 0
}

func mutexState(m *Mutex) *int32 { return (*int32)(unsafe.Pointer(&m.mu)) }

func readerCount(rw *gosync.RWMutex) *int32 {
	return &(*rwWords)(unsafe.Pointer(rw)).readers
}

// rwWords is a sync.RWMutex, laid out as sync lays it out (checked by
// rwLayout), so that RLock's and RUnlock's fast paths reach its reader
// count as a field; std is the sync.RWMutex whose methods the rest calls.
type rwWords struct {
	w          gosync.Mutex
	_, _       uint32 // the writer's and readers' semaphores
	readers    int32
	readerWait int32
}

// std is rw's sync.RWMutex.
func (rw *RWMutex) std() *gosync.RWMutex { return (*gosync.RWMutex)(unsafe.Pointer(&rw.rw)) }

var _ [0]byte = [unsafe.Sizeof(rwWords{}) - unsafe.Sizeof(gosync.RWMutex{})]byte{}
var _ [0]byte = [unsafe.Sizeof(gosync.RWMutex{}) - unsafe.Sizeof(rwWords{})]byte{}

// The methods are inlinable where sync's are (Mutex's Lock and Unlock,
// RWMutex's RLock and RUnlock). In the owner mode, a Lock is a call of
// lockFast: sync's compare-and-swap of the state word, then a store of the
// goroutine id (read from its g) into the owner word; an Unlock clears the
// owner word and makes sync's compare-and-swap back. RLock and RUnlock are
// sync's fast paths, inlined whole: one compare-and-swap of the reader
// count, from 0 to 1 and from 1 to 0 (where sync's add finds it 0 and
// leaves it 1, and back), which through an interface is one call, as
// sync's. Anything else (a lock in use, other readers, waiters, the
// records mode) takes sync's own methods, through the slow paths. They
// are go:norace: the owner word is invisible to the race detector. Under
// -race (raceOn) there are no fast paths: every call is sync's own, with
// its race annotations (and the compiler inlines no function marked
// norace).

// Lock locks m. If the lock is already in use, the calling goroutine blocks
// until the mutex is available.
//
//go:norace
func (m *Mutex) Lock() { lockFast(m) }

// lockSlowPath is Lock when lockFast cannot take m at once.
//
//go:noinline
//go:norace
func (m *Mutex) lockSlowPath() {
	if records {
		m.lockRecords()
		return
	}
	g := curGoid() // before waiting: the critical section does not wait for it
	m.mu.Lock()
	if mutexOwner {
		m.owner = g
	}
}

// TryLock tries to lock m and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:norace
func (m *Mutex) TryLock() bool {
	if records {
		return m.tryLockRecords()
	}
	if !m.mu.TryLock() {
		return false
	}
	if mutexOwner {
		m.owner = curGoid()
	}
	return true
}

// Unlock unlocks m. It is a run-time error if m is not locked on entry to
// Unlock: the same unrecoverable "fatal error: sync: unlock of unlocked
// mutex" as sync.Mutex's.
//
//go:norace
func (m *Mutex) Unlock() {
	if !raceOn && m.owner > 0 {
		m.owner = 0
		if atomic.CompareAndSwapInt32(mutexState(m), 1, 0) {
			return
		}
	}
	m.unlockSlowPath()
}

//go:noinline
//go:norace
func (m *Mutex) unlockSlowPath() {
	if o := m.owner; o != 0 {
		m.owner = 0
		unhold(o)
	}
	m.mu.Unlock()
}

// Lock locks rw for writing. If the lock is already locked for reading or
// writing, Lock blocks until the lock is available.
//
//go:norace
func (rw *RWMutex) Lock() {
	if records {
		rw.lockRecords()
		return
	}
	rw.std().Lock()
	if ownerOn {
		rw.owner = curGoid()
	}
}

// TryLock tries to lock rw for writing and reports whether it succeeded.
//
// Note that while correct uses of TryLock do exist, they are rare, and use
// of TryLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:norace
func (rw *RWMutex) TryLock() bool {
	if records {
		return rw.tryLockRecords()
	}
	if !rw.std().TryLock() {
		return false
	}
	if ownerOn {
		rw.owner = curGoid()
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
	if o := rw.owner; o < 0 {
		rw.owner = 0
		unhold(o)
	} else {
		rw.owner = 0
	}
	rw.std().Unlock()
}

// RLock locks rw for reading.
//
// It should not be used for recursive read locking; a blocked Lock call
// excludes new readers from acquiring the lock. See the documentation on
// the RWMutex type.
//
//go:norace
func (rw *RWMutex) RLock() {
	if raceOn || rslow || !atomic.CompareAndSwapInt32(&rw.rw.readers, 0, 1) {
		rw.rlockSlowPath()
	}
}

// rlockSlowPath is RLock but for its fast path; in the records mode the
// records, with the return addresses above it: at most three of the
// drop-in's frames (RLock's, when not inlined, as under -race; a method
// value's or RLocker's wrapper) before the program's two.
//
//go:noinline
//go:norace
func (rw *RWMutex) rlockSlowPath() {
	if records {
		var pcs framePCs
		rw.rlockRecords(callerInfo(goidOff, &pcs, 5), &pcs)
		return
	}
	rw.std().RLock()
}

// TryRLock tries to lock rw for reading and reports whether it succeeded.
//
// Note that while correct uses of TryRLock do exist, they are rare, and use
// of TryRLock is often a sign of a deeper problem in a particular use of
// mutexes.
//
//go:norace
func (rw *RWMutex) TryRLock() bool {
	if records {
		return rw.tryRLockRecords()
	}
	return rw.std().TryRLock()
}

// RUnlock undoes a single RLock call; it does not affect other
// simultaneous readers. It is a run-time error if rw is not locked for
// reading on entry to RUnlock: the same unrecoverable error as
// sync.RWMutex's.
//
//go:norace
func (rw *RWMutex) RUnlock() {
	if raceOn || rslow || !atomic.CompareAndSwapInt32(&rw.rw.readers, 1, 0) {
		rw.runlockSlowPath()
	}
}

//go:noinline
//go:norace
func (rw *RWMutex) runlockSlowPath() {
	if records {
		rw.runlockRecords()
	}
	rw.std().RUnlock()
}

// RLocker returns a Locker interface that implements the Lock and Unlock
// methods by calling rw.RLock and rw.RUnlock.
func (rw *RWMutex) RLocker() Locker { return (*rlocker)(rw) }

type rlocker RWMutex

func (r *rlocker) Lock()   { (*RWMutex)(r).RLock() }
func (r *rlocker) Unlock() { (*RWMutex)(r).RUnlock() }

// SetName gives m a name for lockwatch's reports, in place of the site
// where it is held: worth it for the few locks one looks for by name. It
// may be called at any time, also before the first Lock; the last name
// given wins. Names are kept to inproc.NameMax (104) bytes. The first name
// given to a mutex allocates (a cleanup forgets it when the mutex is
// collected). Names are kept in the records mode only (in the owner mode a
// lock is named by the variable that holds it, when the binary has
// symbols).
func SetName[M *Mutex | *RWMutex](m M, name string) {
	if !records {
		return
	}
	switch m := any(m).(type) {
	case *Mutex:
		inproc.SetName(unsafe.Pointer(m), inproc.KindMutex, name)
	case *RWMutex:
		inproc.SetName(unsafe.Pointer(m), inproc.KindRWMutex, name)
	}
}
