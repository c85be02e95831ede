//go:build !nolockwatch

#include "textflag.h"

// func callerInfo(off uintptr) (goid int64, pc, pc2 uintptr)
//
// With no frame of its own, BP here is the caller's (Lock's) frame pointer:
// 8(BP) is Lock's return address, 0(BP) its caller's frame pointer, whose
// +8 is that caller's return address. Go keeps the chain on amd64 and it
// runs towards higher addresses; a link that does not (the chain's end, 0)
// gives pc2 = 0. (TLS) is the current g; off, found and verified by
// internal/rt/record, is where its goroutine id lives.
TEXT ·callerInfo(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ 8(BP), AX
	MOVQ AX, pc+16(FP)
	MOVQ $0, DX
	MOVQ 0(BP), CX
	CMPQ CX, BP
	JBE  nopc2
	MOVQ 8(CX), DX
nopc2:
	MOVQ DX, pc2+24(FP)
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
