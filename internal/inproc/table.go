package inproc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/lockwatch/lockwatch/internal/record"
)

// Kind is the kind of a drop-in lock.
type Kind uint8

// Kinds.
const (
	KindMutex Kind = iota + 1
	KindRWMutex
)

func (k Kind) String() string {
	switch k {
	case KindMutex:
		return "mutex"
	case KindRWMutex:
		return "rwmutex"
	}
	return "unknown"
}

// State is the part of a drop-in lock that the table reads: embedded in
// every Mutex and RWMutex. The zero value is an unregistered lock.
type State struct {
	// Holder is the write holder's record.
	Holder record.Holder
	// self is the address the lock was registered at, so that a copy (a
	// bug go vet reports, but one programs make) registers as a new lock.
	self atomic.Uintptr
	id   atomic.Uint64
	// over counts readers that found no reader slot (RWMutex).
	over atomic.Int32
}

// Registered reports whether s is in the table at its current address: one
// load on the acquire path.
func (s *State) Registered() bool { return s.self.Load() == uintptr(unsafe.Pointer(s)) }

// ID returns s's id in the table, 0 before Register. Ids are never reused.
func (s *State) ID() uint64 { return s.id.Load() }

// entry is a lock's line in the table.
type entry struct {
	id     uint64
	kind   Kind
	w      weak.Pointer[State]
	first  uintptr // the return address of the first Lock
	first2 uintptr // and of its caller
	name   atomic.Pointer[string]
}

const nShards = 64

// The table is per process, as the locks it lists are: a program has one
// set of live mutexes, and the probe that serves it is one per process too.
var table struct {
	mu     sync.Mutex // serialises registrations
	nextID uint64     // Called with mu held.
	// firsts are OnFirst's functions not called yet, by registration
	// number; the first lock calls them all, with mu held.
	firsts    map[uint64]func()
	nextFirst uint64
	shards    [nShards]shard
}

// OnFirst tells a watcher that keeps a sign elsewhere of whether the process
// has a lock yet (the probe's "no drop-in mutexes" file): if no lock was ever
// registered, it calls none and arranges for the first registration to call
// first, both with the table's lock held, so that nothing registers in
// between and first returns before the first lock can be taken. If a lock
// was registered already it calls neither. cancel forgets this first if it
// was not called yet, and no other: two watchers (a probe closing while
// another starts) never undo each other.
func OnFirst(none, first func()) (cancel func()) {
	table.mu.Lock()
	defer table.mu.Unlock()
	if table.nextID > 0 {
		return func() {}
	}
	none()
	if table.firsts == nil {
		table.firsts = make(map[uint64]func())
	}
	table.nextFirst++
	n := table.nextFirst
	table.firsts[n] = first
	return func() {
		table.mu.Lock()
		defer table.mu.Unlock()
		delete(table.firsts, n)
	}
}

type shard struct {
	mu sync.Mutex
	m  map[uint64]*entry
	_  [40]byte
}

// Register puts s in the table if it is not there (at its address), with pc
// and pc2 (Lock's return address and its caller's) as the site of its
// first Lock; it returns s's id. The first call for a
// lock allocates; later ones return at once.
func Register(s *State, kind Kind, pc, pc2 uintptr) uint64 {
	if s.Registered() {
		return s.id.Load()
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if s.Registered() {
		return s.id.Load()
	}
	table.nextID++
	for n, f := range table.firsts {
		delete(table.firsts, n)
		f() // before the lock can be taken: see OnFirst
	}
	e := &entry{id: table.nextID, kind: kind, w: weak.Make(s), first: pc, first2: pc2}
	sh := &table.shards[e.id%nShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uint64]*entry)
	}
	sh.m[e.id] = e
	sh.mu.Unlock()
	runtime.AddCleanup(s, forget, e.id)
	// id before self: whoever sees the lock registered sees its id.
	s.id.Store(e.id)
	s.self.Store(uintptr(unsafe.Pointer(s)))
	return e.id
}

// forget drops a collected lock's entry.
func forget(id uint64) {
	sh := &table.shards[id%nShards]
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

func lookup(id uint64) *entry {
	sh := &table.shards[id%nShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[id]
}

// SetName gives the lock of s a display name (registering it).
func SetName(s *State, kind Kind, name string) {
	id := Register(s, kind, 0, 0)
	if e := lookup(id); e != nil {
		e.name.Store(&name)
	}
}

// Live returns how many locks the table lists.
func Live() int {
	n := 0
	for i := range table.shards {
		sh := &table.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// mix is a 64-bit finalizer (splitmix64's), to spread goroutine and lock ids
// over the slot tables.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
