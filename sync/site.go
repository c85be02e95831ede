//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// Sites, for the records mode: the return addresses above the records
// functions are made the program's by inproc.UserStack.

// siteOf returns the site of a lock call and its caller from the return
// addresses above the records function (callerInfo's), through a cache of
// answers keyed by those addresses: a program has few lock call paths.
//
//go:norace
func siteOf(pcs *[6]uintptr) (pc, pc2 uintptr) {
	// Three of the addresses, multiplied side by side (a chain of six
	// dependent multiplications cost more than the rest of the lookup);
	// the entry compares all six.
	h := (uint64(pcs[1])*0x9e3779b97f4a7c15 ^ uint64(pcs[2])*0xbf58476d1ce4e5b9 ^ uint64(pcs[3])*0x94d049bb133111eb) >> 54
	for p := uint64(0); p < siteProbes; p++ {
		e := &siteCache[(h+p)&(siteSlots-1)]
		switch st := e.state; {
		case st == siteReady:
			seqlock.LoadFence()
			if samePCs(&e.key, pcs) {
				return e.pc, e.pc2
			}
		case st == 0 && seqlock.CAS64(&e.state, 0, siteWriting):
			pc, pc2 := resolveSite(*pcs)
			e.key, e.pc, e.pc2 = *pcs, pc, pc2
			seqlock.StoreFence()
			e.state = siteReady
			return pc, pc2
		}
	}
	return resolveSite(*pcs)
}

// samePCs compares the words one by one (== on the arrays calls the
// runtime's memequal).
//
//go:norace
func samePCs(a, b *[6]uintptr) bool {
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5]
}

// The cache of siteOf: an entry is claimed (state 0 to siteWriting) by a
// quiet CAS, written once, then published (siteReady), and never changes
// after, so a reader that sees siteReady reads a whole entry.
const (
	siteSlots   = 1024 // a power of two
	siteProbes  = 4
	siteWriting = 1
	siteReady   = 2
)

type siteEntry struct {
	state   uint64
	key     [6]uintptr
	pc, pc2 uintptr
}

var siteCache [siteSlots]siteEntry

// resolveSite is siteOf's answer: the program's first two return
// addresses (inproc.UserStack).
//
//go:norace
func resolveSite(pcs [6]uintptr) (pc, pc2 uintptr) {
	s := inproc.UserStack(pcs[:])
	switch len(s) {
	case 0:
		return 0, 0
	case 1:
		return s[0], 0
	}
	return s[0], s[1]
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
