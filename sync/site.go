//go:build !nolockwatch && (amd64 || arm64)

package sync

import (
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// Sites, for the records mode: the return addresses above the records
// functions are made the program's by inproc.UserStack.

// siteOf returns the site of a lock call and its caller from the return
// addresses above the records function (callerInfo's).
//
//go:norace
func siteOf(pcs *[6]uintptr) (pc, pc2 uintptr) {
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
	var tmp record.Stack
	tmp.Capture(skip)
	u := inproc.UserStack(tmp.PCs[:tmp.N])
	s.N = copy(s.PCs[:], u)
}
