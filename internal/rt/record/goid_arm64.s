#include "textflag.h"

// func gword(off uintptr) int64
//
// g (R28) is the current g on arm64, in every package.
TEXT ·gword(SB), NOSPLIT|NOFRAME, $0-16
	MOVD off+0(FP), R1
	MOVD (g)(R1), R0
	MOVD R0, ret+8(FP)
	RET
