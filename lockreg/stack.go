package lockreg

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/stackdump"
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
type stackTable struct {
	slots [4096]atomic.Uint64
	mu    sync.Mutex // serialises misses: symbolize, write, insert
	dict  *stackdump.Dict
	err   error // the first dictionary write error; Called with mu held.
}

func (t *stackTable) known(id uint64) bool {
	i := id & (uint64(len(t.slots)) - 1)
	for probe := 0; probe < 8; probe++ {
		switch t.slots[(i+uint64(probe))&(uint64(len(t.slots))-1)].Load() {
		case id:
			return true
		case 0:
			return false
		}
	}
	return false
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
	// A copy: the frames iterator keeps its slice, which would make every
	// caller's stackPCs escape to the heap.
	pcs := append([]uintptr(nil), s.Frames()...)
	frames := cleanFrames(trimOwnFrames(stackdump.FramesOf(pcs)))
	if err := t.dict.Add(id, frames); err != nil && t.err == nil {
		t.err = err
	}
	i := id & (uint64(len(t.slots)) - 1)
	for probe := 0; probe < 8; probe++ {
		slot := &t.slots[(i+uint64(probe))&(uint64(len(t.slots))-1)]
		if slot.Load() == 0 {
			slot.Store(id)
			return
		}
	}
	// The set is crowded here: the dictionary's own set answers later
	// look-ups (stackdump.Dict.Add is idempotent), at a mutex's cost.
}

// trimOwnFrames drops the lock's own frames from the top of a stack, so
// that it starts at the caller of Lock whichever way it was captured.
func trimOwnFrames(fs []stackdump.Frame) []stackdump.Frame {
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
func cleanFrames(fs []stackdump.Frame) []stackdump.Frame {
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
