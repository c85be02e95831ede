package record

// fpCallers is implemented in callers_amd64.s.
//
//go:noescape
func fpCallers(pcs *uintptr, n int) int

const haveFPCallers = true
