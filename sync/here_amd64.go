//go:build !nolockwatch

package sync

// callerInfo returns the current goroutine's id, read at offset off of its
// g (0 if off is 0), and the return address of its caller: the PC in the
// function that called Lock (callerInfo_amd64.s). Its caller must not be
// inlined and must call it directly.
//
//go:noescape
func callerInfo(off uintptr) (goid int64, pc uintptr)
