#include "textflag.h"

// func gword(off uintptr) int64
//
// (TLS) is the current g on amd64, in every package.
TEXT ·gword(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ (TLS), AX
	MOVQ off+0(FP), CX
	MOVQ (AX)(CX*1), AX
	MOVQ AX, ret+8(FP)
	RET
