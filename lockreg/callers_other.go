//go:build !amd64

package lockreg

func fpCallers(pcs *uintptr, n int) int { panic("unreachable") }

const haveFPCallers = false
