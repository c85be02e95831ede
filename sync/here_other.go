//go:build !nolockwatch && !amd64

package sync

import "runtime"

// callerInfo returns 0 for the goroutine id (the caller asks
// internal/record) and the return addresses of its caller and of that
// caller's caller, from runtime.Callers: about 100 ns, where amd64 reads
// the frame pointer.
//
//go:noinline
func callerInfo(off uintptr) (goid int64, pc, pc2 uintptr) {
	var pcs [2]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, callerInfo, Lock
	return 0, pcs[0], pcs[1]
}
