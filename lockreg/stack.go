package lockreg

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/stackdict"
)

// stackPCs is a captured acquire stack (record.Stack), captured from Lock.
type stackPCs struct{ record.Stack }

// capture records the stack of the caller of the caller of capture (the
// frame above Lock), into s.
//
//go:noinline
func (s *stackPCs) capture() { s.Stack.Capture(1) }

func (s *stackPCs) hash() uint64 { return s.Stack.Hash() }

// stackID is the id of the stack capture would capture from the same
// frame (record.StackID: hashed, not stored): the stack of the caller of
// Lock, when Lock calls it. With frame pointers, record.CallerID called
// from Lock itself is the same id.
//
//go:noinline
func stackID() uint64 { return record.StackID(1) }

// internCaller captures the stack of the caller of its caller (Lock's
// caller, when Lock calls it: the frames stackID hashed from there), makes
// sure it is in the dictionary, and returns its id. Lock calls it for a
// stack id not known yet: the id it returns is the hash of the frames
// written, so a record names exactly the frames in the dictionary.
//
//go:noinline
func (t *stackTable) internCaller() uint64 {
	var st stackPCs
	st.Stack.Capture(1)
	id := st.hash()
	t.intern(id, &st)
	return id
}

// stackTable remembers which stack ids this process has written to its
// dictionary: a lock-free open-addressing set, so that the acquire path only
// loads a word or two. On a miss the stack is symbolized and written to the
// dictionary file before the id is published, so any id a record holds can be
// resolved from the file, even after the process died.
//
// The set grows: it is kept at most half full (a new set of twice the size
// replaces it, under mu), so a look-up ends at the id or at an empty slot
// after a probe or two on average, and every stack the process interned stays
// known on the fast path, however many call sites it has. (A set of a fixed
// size that gives up after a few probes sends the acquires from each stack it
// could not place to the mutex and to the symbolizer every time.)
type stackTable struct {
	set atomic.Pointer[stackSet]
	mu  sync.Mutex // serialises misses: symbolize, write, insert, grow
	n   int        // ids in set; Called with mu held.
	// dict is the process's stack dictionary; nil before Open and after
	// Close. Called with mu held.
	dict *stackdict.Dict
	err  error // the first dictionary write error; Called with mu held.
}

// stackSet is an open-addressing set of stack ids (0: an empty slot), its
// size a power of two. Slots are only ever set, from 0 to an id, under
// stackTable.mu; readers load them without a lock.
type stackSet struct {
	slots []atomic.Uint64
}

// initialStackSlots is the set's first size: 32 KiB, some 2,000 stacks
// before it grows.
const initialStackSlots = 4096

func newStackSet(n int) *stackSet { return &stackSet{slots: make([]atomic.Uint64, n)} }

// has reports whether id is in the set: linear probing from id's slot to
// id or to an empty slot, of which a set at most half full always has one.
func (s *stackSet) has(id uint64) bool {
	mask := uint64(len(s.slots)) - 1
	for i := id & mask; ; i = (i + 1) & mask {
		switch s.slots[i].Load() {
		case id:
			return true
		case 0:
			return false
		}
	}
}

// add puts id into the set, which must have room. Called with
// stackTable.mu held.
func (s *stackSet) add(id uint64) {
	mask := uint64(len(s.slots)) - 1
	for i := id & mask; ; i = (i + 1) & mask {
		switch s.slots[i].Load() {
		case id:
			return
		case 0:
			s.slots[i].Store(id)
			return
		}
	}
}

func (t *stackTable) known(id uint64) bool {
	s := t.set.Load()
	return s != nil && s.has(id)
}

// intern makes sure id's frames are in the dictionary.
func (t *stackTable) intern(id uint64, s *stackPCs) {
	if t.known(id) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known(id) || t.dict == nil {
		return
	}
	// The dictionary's own set knows the stacks of a process that
	// reopened its dictionary: no need to symbolize those again.
	if !t.dict.Has(id) {
		// A copy: the frames iterator keeps its slice, which would make
		// every caller's stackPCs escape to the heap.
		pcs := append([]uintptr(nil), s.Frames()...)
		frames := cleanFrames(trimOwnFrames(record.FramesOf(pcs)))
		if err := t.dict.Add(id, frames); err != nil && t.err == nil {
			t.err = err
		}
	}
	if id == 0 {
		return // the empty slot's value: never known, always interned here
	}
	set := t.set.Load()
	if set == nil || 2*(t.n+1) > len(set.slots) {
		size := initialStackSlots
		if set != nil {
			size = 2 * len(set.slots)
		}
		grown := newStackSet(size)
		if set != nil {
			for i := range set.slots {
				if v := set.slots[i].Load(); v != 0 {
					grown.add(v)
				}
			}
		}
		set = grown
		t.set.Store(set) // readers of the old set miss new ids and come here
	}
	set.add(id)
	t.n++
}

// trimOwnFrames drops the lock's own frames from the top of a stack, so
// that it starts at the caller of Lock whichever way it was captured.
func trimOwnFrames(fs []record.Frame) []record.Frame {
	for len(fs) > 0 && (strings.HasPrefix(fs[0].Func, pkgPath+".(*Mutex).") ||
		strings.HasPrefix(fs[0].Func, pkgPath+".(*stackPCs).") ||
		strings.HasPrefix(fs[0].Func, pkgPath+".(*stackTable).") ||
		strings.HasPrefix(fs[0].Func, recordPath+".")) {
		fs = fs[1:]
	}
	return fs
}

// cleanFrames drops the compiler's go-statement wrappers (f.gowrap1), which
// the frame-pointer walk sees and runtime.Callers elides, and runtime.goexit,
// the bottom of every goroutine, which says nothing.
func cleanFrames(fs []record.Frame) []record.Frame {
	out := fs[:0]
	for _, f := range fs {
		if !strings.Contains(f.Func, ".gowrap") && f.Func != "runtime.goexit" {
			out = append(out, f)
		}
	}
	return out
}

const pkgPath = "github.com/lockwatch/lockwatch/lockreg"

const recordPath = "github.com/lockwatch/lockwatch/internal/rt/record"

// curGoid is the current goroutine's id (record.Goid: read from the
// runtime's g, verified against runtime.Stack once per process).
func curGoid() int64 { return record.Goid() }
