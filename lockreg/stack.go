package lockreg

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lockwatch/lockwatch/stackdump"
	"github.com/petermattis/goid"
)

// maxFrames is the depth of a recorded acquire stack.
const maxFrames = 32

// stackPCs is a captured acquire stack, as return PCs.
type stackPCs struct {
	pcs [maxFrames]uintptr
	n   int
}

// useFP tells whether captures walk frame pointers. Frame-pointer walking is
// 40x cheaper than runtime.Callers and exact for Go frames, but C frames
// (cgo callbacks) may lack frame pointers; a binary that links glibc (the
// same test that rules out the robust list) uses runtime.Callers.
var useFP bool // set in init, after the robust list

// capture records the stack of the caller of the caller of capture
// (the frame above Lock), into s.
//
//go:noinline
func (s *stackPCs) capture() {
	if useFP {
		// fpCallers starts at capture's caller (Lock); skip it.
		n := fpCallers(&s.pcs[0], maxFrames)
		if n > 0 {
			copy(s.pcs[:], s.pcs[1:n])
			n--
		}
		s.n = n
		return
	}
	// Skip runtime.Callers, capture and its caller.
	s.n = runtime.Callers(3, s.pcs[:])
}

// hash is a 64-bit hash of the PCs, never 0. Two independent multiply-xor
// lanes halve the dependency chain; a final avalanche mixes them.
func (s *stackPCs) hash() uint64 {
	const k1, k2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	a, b := uint64(k2), uint64(s.n)
	pcs := s.pcs[:s.n]
	for len(pcs) >= 2 {
		a = (a ^ uint64(pcs[0])) * k1
		b = (b ^ uint64(pcs[1])) * k2
		pcs = pcs[2:]
	}
	if len(pcs) == 1 {
		a = (a ^ uint64(pcs[0])) * k1
	}
	h := a ^ (b >> 29) ^ (b << 35)
	h ^= h >> 31
	h *= k2
	h ^= h >> 29
	if h == 0 {
		h = 1
	}
	return h
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
	pcs := append([]uintptr(nil), s.pcs[:s.n]...)
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
		strings.HasPrefix(fs[0].Func, pkgPath+".(*stackPCs).")) {
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

// goroutine ids. github.com/petermattis/goid reads the id from the runtime's
// g struct at a per-release offset: 3 ns, against 15 us for parsing
// runtime.Stack. Its answer is checked against the parsed id once per
// process, and never trusted if they ever differ, so that a new Go release
// can never make lockreg record wrong ids silently.
var goidOK = sync.OnceValue(func() bool {
	check := func() bool { return goid.Get() == slowGoid() }
	ok := check()
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func() { done <- check() }()
	}
	for i := 0; i < 4; i++ {
		ok = <-done && ok
	}
	return ok
})

func curGoid() int64 {
	if goidOK() {
		return goid.Get()
	}
	return slowGoid()
}

// slowGoid parses "goroutine 123 [" from runtime.Stack.
func slowGoid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}
