package record

// fpCallers is implemented in callers_amd64.s.
//
//go:noescape
func fpCallers(pcs *uintptr, n, skip int) int

const haveFPCallers = true
