package inproc

import (
	"runtime"
	"strings"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// Sites, for the records mode. The drop-in's Lock and the other methods
// are inlinable, so the function that called Lock is found from the
// caller of the drop-in's records functions, which is either the program's function itself (Lock inlined
// into it: the return address lies in Lock's inlined code) or Lock's own
// frame (not inlined: called through an interface, a method value, or
// under -race). UserPC turns such a return address into one of the
// program's: the position, in the first of the program's frames that the
// inlined calls expand to, of its call of Lock, as a return address
// (runtime.Callers' "virtual" PC of an inlined call's parent); or says the
// address is all this package's (a Lock not inlined), for the next one.
// So a site and a stack symbolize to the program's own file and line, with
// or without expansion of inlined calls.

// own reports whether fn is the drop-in's: package sync's (its tests are
// package sync_test's), this package's or the held-lock table's.
func own(fn string) bool {
	const m = "github.com/lockwatch/lockwatch/"
	rest, ok := strings.CutPrefix(fn, m)
	return ok && (strings.HasPrefix(rest, "sync.") || strings.HasPrefix(rest, "internal/rt/inproc.") ||
		strings.HasPrefix(rest, "internal/rt/heldset."))
}

// siteSlots caches UserPC's answers: return address -> answer, claimed by
// a quiet CAS of the key (never freed: a program has few lock sites).
const (
	siteSlots  = 4096 // a power of two
	siteProbes = 8
)

// siteSlot's val is the answer + 1 (1: all this package's), stored before
// it is read: 0 means not yet written.
type siteSlot struct{ key, val uint64 }

var sites [siteSlots]siteSlot

// UserPC returns the program's return address that pc (a return address
// into the program or into the drop-in) stands for, or false if pc is all
// the drop-in's.
//
//go:norace
func UserPC(pc uintptr) (uintptr, bool) {
	h := (uint64(pc) * 0x9e3779b97f4a7c15) >> 52
	for p := uint64(0); p < siteProbes; p++ {
		s := &sites[(h+p)&(siteSlots-1)]
		k := s.key
		if k == uint64(pc) {
			seqlock.LoadFence()
			if v := s.val; v != 0 {
				return uintptr(v - 1), v != 1
			}
			break
		}
		if k == 0 {
			u, ok := resolveUserPC(pc)
			v := uint64(1)
			if ok {
				v = uint64(u) + 1
			}
			if seqlock.CAS64(&s.key, 0, uint64(pc)) {
				s.val = v
			}
			return u, ok
		}
	}
	return resolveUserPC(pc)
}

// resolveUserPC is UserPC's answer, from the runtime's symbol table.
func resolveUserPC(pc uintptr) (uintptr, bool) {
	// The 0 after pc makes CallersFrames give the frames pc's inlined
	// calls expand to (it does only when a PC follows), then ends.
	fs := runtime.CallersFrames([]uintptr{pc, 0})
	for {
		f, more := fs.Next()
		if f.Function != "" && !own(f.Function) {
			return f.PC + 1, true
		}
		if !more {
			return 0, false
		}
	}
}

// UserStack drops from the start of pcs (return addresses, innermost
// first, from a frame-pointer walk or runtime.Callers) the drop-in's
// frames, and makes the first left the program's (UserPC), in place.
//
//go:norace
func UserStack(pcs []uintptr) []uintptr {
	for len(pcs) > 0 {
		u, ok := UserPC(pcs[0])
		if !ok {
			pcs = pcs[1:]
			continue
		}
		pcs[0] = u
		if len(pcs) > 1 && pcs[1] == u {
			// runtime.Callers gave the inlined call's parent as the next PC.
			pcs = pcs[1:]
		}
		break
	}
	return pcs
}
