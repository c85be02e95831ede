package record

// fpCallers is implemented in callers_amd64.s.
//
//go:noescape
func fpCallers(pcs *uintptr, n, skip int) int

// fpHash is implemented in callers_amd64.s.
func fpHash(n, skip int) uint64

const haveFPCallers = true
