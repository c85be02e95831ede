package record

import (
	"math/bits"
	"runtime"
	_ "unsafe" // for go:linkname
)

// MaxFrames is the depth of a captured stack.
const MaxFrames = 32

// A Stack is a captured stack, as return PCs, innermost first. The zero
// value is an empty stack.
type Stack struct {
	PCs [MaxFrames]uintptr
	N   int
}

// Frames returns the captured PCs.
func (s *Stack) Frames() []uintptr { return s.PCs[:s.N] }

// useFP tells whether captures walk frame pointers. Frame-pointer walking is
// 40x cheaper than runtime.Callers and exact for Go frames, but C frames
// (cgo callbacks) may lack frame pointers, so a binary with cgo uses
// runtime.Callers. Set once in init; tests flip it with SetFramePointers.
var useFP = haveFPCallers && !iscgo

// iscgo is set by runtime/cgo when the binary links it. The runtime keeps
// this linkname working for the packages that use it (go.dev/issue/67401).
//
//go:linkname iscgo runtime.iscgo
var iscgo bool

// FramePointers reports whether Capture walks frame pointers (else it calls
// runtime.Callers).
func FramePointers() bool { return useFP }

// SetFramePointers makes Capture walk frame pointers, or not, and returns
// the previous setting. It is for tests: it is not safe while other
// goroutines capture, and it refuses (returning false) where there is no
// frame-pointer walker.
func SetFramePointers(on bool) bool {
	old := useFP
	useFP = on && haveFPCallers
	return old
}

// Capture records the stack of its caller's caller, skipping skip more
// frames: with skip 0, the stack starts at the function that called the
// function that called Capture (for a lock: the caller of Lock).
//
//go:noinline
func (s *Stack) Capture(skip int) {
	if useFP {
		// fpCallers starts at Capture's caller; skip it and skip more,
		// within the same MaxFrames frames (no copy of the PCs after).
		s.N = fpCallers(&s.PCs[0], MaxFrames, 1+skip)
		return
	}
	// Skip runtime.Callers, Capture and its caller.
	s.N = runtime.Callers(3+skip, s.PCs[:])
}

// StackID returns the hash of the stack that Capture(skip) would capture
// at the same place (the same value as Hash of it), without storing the
// PCs: with frame pointers, one pass that walks the chain and hashes each
// return PC as it is read, the multiplications overlapping the loads. With
// skip 0, the stack starts at the function that called the function that
// called StackID.
//
//go:noinline
func StackID(skip int) uint64 {
	if useFP {
		return fpHash(MaxFrames, 1+skip)
	}
	var s Stack
	// Skip runtime.Callers, StackID and its caller.
	s.N = runtime.Callers(3+skip, s.PCs[:])
	return s.Hash()
}

// The hash's constants and steps, shared with fpHash (callers_amd64.s),
// which must compute the same value (TestStackIDMatchesHash).
const (
	hashK1 = 0x9e3779b97f4a7c15
	hashK2 = 0xbf58476d1ce4e5b9
)

// Hash is a 64-bit hash of the PCs, never 0. Two independent multiply-xor
// lanes take the PCs in turn (even ones a, odd ones b), which halves the
// dependency chain; the count and a final avalanche mix them. The count
// comes last so that one pass over a frame-pointer chain, which learns the
// count at its end, computes the same hash (fpHash).
func (s *Stack) Hash() uint64 {
	a, b := uint64(hashK2), uint64(hashK1)
	pcs := s.PCs[:s.N]
	for len(pcs) >= 2 {
		a = (a ^ uint64(pcs[0])) * hashK1
		b = (b ^ uint64(pcs[1])) * hashK2
		pcs = pcs[2:]
	}
	if len(pcs) == 1 {
		a = (a ^ uint64(pcs[0])) * hashK1
	}
	return hashEnd(a, b, s.N)
}

// hashEnd mixes the lanes and the count of PCs.
func hashEnd(a, b uint64, n int) uint64 {
	h := a ^ bits.RotateLeft64(b, -29) ^ uint64(n)
	h ^= h >> 31
	h *= hashK2
	h ^= h >> 29
	if h == 0 {
		h = 1
	}
	return h
}
