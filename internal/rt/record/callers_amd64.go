package record

// fpCallers is implemented in callers_amd64.s.
//
//go:noescape
func fpCallers(pcs *uintptr, n, skip int) int

// fpHash is implemented in callers_amd64.s.
func fpHash(n, skip int) uint64

// CallerID returns the id (Hash) of the stack of the caller of the
// function that calls it, by frame pointers, without storing it: the id
// of the stack that Capture(1) stores when called from a function that
// function calls, so a lock can hash its caller's stack with one call and
// capture it, on a miss, from a helper. Call it only when FramePointers
// reports true (otherwise Capture walks another way). Implemented in
// callers_amd64.s: at most MaxFrames-2 PCs, as many as Capture(1) keeps
// from one call deeper (MaxFrames walked, 2 skipped).
func CallerID() uint64

const haveFPCallers = true
