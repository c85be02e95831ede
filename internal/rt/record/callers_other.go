//go:build !amd64

package record

func fpCallers(pcs *uintptr, n, skip int) int { panic("unreachable") }

func fpHash(n, skip int) uint64 { panic("unreachable") }

// CallerID is for amd64, where FramePointers can report true: see
// callers_amd64.go.
func CallerID() uint64 { panic("record.CallerID without frame pointers") }

const haveFPCallers = false
