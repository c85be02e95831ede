//go:build !nolockwatch && (amd64 || arm64)

package sync

// callerInfo returns the current goroutine's id, read at offset off of its
// g (0 if off is 0), the return address of its caller (the PC in the
// function that called Lock), and the return address of that function (0
// if unknown), for when the first is a wrapper (here_amd64.s, here_arm64.s). Its caller
// must not be inlined and must call it directly.
//
//go:noescape
func callerInfo(off uintptr) (goid int64, pc, pc2 uintptr)
