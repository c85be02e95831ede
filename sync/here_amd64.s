//go:build !nolockwatch

#include "textflag.h"

// func callerInfo(off uintptr) (goid int64, pc uintptr)
//
// With no frame of its own, BP here is the caller's frame pointer, and
// 8(BP) the caller's return address. (TLS) is the current g; off, found and
// verified by internal/record, is where its goroutine id lives.
TEXT ·callerInfo(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ 8(BP), AX
	MOVQ AX, pc+16(FP)
	MOVQ off+0(FP), CX
	TESTQ CX, CX
	JZ   nogoid
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
	MOVQ AX, goid+8(FP)
	RET
nogoid:
	MOVQ $0, goid+8(FP)
	RET
