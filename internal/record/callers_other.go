//go:build !amd64

package record

func fpCallers(pcs *uintptr, n, skip int) int { panic("unreachable") }

func fpHash(n, skip int) uint64 { panic("unreachable") }

const haveFPCallers = false
