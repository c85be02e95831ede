//go:build !nolockwatch && (amd64 || arm64)

package sync

// callerInfo returns the current goroutine's id, read at offset off of its
// g (0 if off is 0), and fills the first n (1 to 6) of pcs with the return
// addresses above its caller, innermost first: the return address of its
// caller (into the function that called it), then that function's, and so
// on, by the frame pointers (0 past the chain's end) (here_amd64.s,
// here_arm64.s). Its caller must not be inlined and must call it directly.
//
//go:noescape
func callerInfo(off uintptr, pcs *framePCs, n int) (goid int64)

// curGoid returns the current goroutine's id, read at offset goidOff of
// its g; 0 if goidOff is 0 (not found).
func curGoid() int64
