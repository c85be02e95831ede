//go:build !nolockwatch && !amd64

package sync

import "runtime"

// callerInfo returns 0 for the goroutine id (the caller asks
// internal/record) and the return address of its caller, from
// runtime.Callers: about 100 ns, where amd64 reads the frame pointer.
//
//go:noinline
func callerInfo(off uintptr) (goid int64, pc uintptr) {
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, callerInfo, Lock
	return 0, pcs[0]
}
