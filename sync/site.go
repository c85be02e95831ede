//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// Sites, for the records mode: the return addresses above the records
// functions, made the program's by inproc.UserPC.

// framePCs is what callerInfo fills: the return addresses above a records
// function, innermost first. The drop-in's frames among them are at most
// four (the records function's caller, always; the assembly's call of it
// or a Go fast path; the method itself when it was not inlined, as under
// -race; a method value's wrapper), so the program's first two addresses
// are among the six.
type framePCs [6]uintptr

// siteOf returns the site of a lock call and its caller: the first of the
// return addresses above the records function that is the program's (made
// the program's by userPC), and the one after it.
//
//go:norace
func siteOf(pcs *framePCs) (pc, pc2 uintptr) {
	for i := 0; i < len(pcs); i++ {
		p := pcs[i]
		if p == 0 {
			break
		}
		if u := userPC(p); u != 0 {
			if i+1 < len(pcs) {
				pc2 = pcs[i+1]
			}
			return u, pc2
		}
	}
	return 0, 0
}

// pcWords caches inproc.UserPC's answers in front of its own table, one
// word per address, so that a hit is one load and no fence: the address
// << 16 | d, where d is 0 for an address all the drop-in's, else 1 + how
// far before the address the program's is (an answer that does not fit is
// not kept here). A word is stored whole by one plain store and read by
// one load (an aligned 8-byte access is single-copy atomic on amd64 and
// arm64), so a reader sees one answer or another, never a mix; two
// addresses that share a slot evict each other. 0 is empty (no address is
// 0).
var pcWords [4096]uint64

// userPC is inproc.UserPC, through pcWords: the program's address that pc
// stands for, or 0 if pc is all the drop-in's (the program's is never 0).
//
//go:norace
func userPC(pc uintptr) uintptr {
	if w := pcWords[uint64(pc)*0x9e3779b97f4a7c15>>52]; w>>16 == uint64(pc) {
		if d := uintptr(w & 0xffff); d != 0 {
			return pc - d + 1
		}
		return 0
	}
	return userPCSlow(pc)
}

//go:noinline
//go:norace
func userPCSlow(pc uintptr) uintptr {
	w := &pcWords[uint64(pc)*0x9e3779b97f4a7c15>>52]
	u, ok := inproc.UserPC(pc)
	d := uint64(0) // the drop-in's
	if ok {
		if u > pc || pc-u >= 0xffff {
			return u // not kept here
		}
		d = uint64(pc-u) + 1
	} else {
		u = 0
	}
	if uint64(pc) < 1<<48 {
		*w = uint64(pc)<<16 | d
	}
	return u
}

// captureUser captures the stack of the program's call of a lock method:
// skip is how many of this package's functions are between captureUser's
// caller (included) and the frame where the lock method was called.
//
//go:noinline
//go:norace
func captureUser(s *record.Stack, skip int) {
	s.Capture(skip)
	u := inproc.UserStack(s.PCs[:s.N])
	// In place (u ends where the capture does): no second stack buffer
	// on the waiting goroutine's stack.
	s.N = copy(s.PCs[:], u)
}
