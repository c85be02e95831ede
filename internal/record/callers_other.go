//go:build !amd64

package record

func fpCallers(pcs *uintptr, n, skip int) int { panic("unreachable") }

const haveFPCallers = false
