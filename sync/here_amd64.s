//go:build !nolockwatch

#include "textflag.h"

// func callerInfo(off uintptr, pcs *framePCs, n int) (goid int64)
//
// With no frame of its own, BP here is the caller's frame pointer: 8(BP)
// is the caller's return address, 0(BP) the frame pointer of the function
// it returns to, whose +8 is that one's return address, and so on. Go
// keeps the chain on amd64 and it runs towards higher addresses; a link
// that does not (the chain's end, 0) ends the walk, and the rest of pcs is
// 0. (TLS) is the current g; off, found and verified by internal/rt/record,
// is where its goroutine id lives.
TEXT ·callerInfo(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ pcs+8(FP), DI
	MOVQ n+16(FP), R9
	MOVQ BP, CX
	MOVQ $0, R8
walk:
	MOVQ 8(CX), AX
	MOVQ AX, (DI)(R8*8)
	INCQ R8
	CMPQ R8, R9
	JAE  walked
	MOVQ 0(CX), DX
	CMPQ DX, CX
	JBE  zero
	MOVQ DX, CX
	JMP  walk
zero:
	MOVQ $0, (DI)(R8*8)
	INCQ R8
	CMPQ R8, R9
	JB   zero
walked:
	MOVQ off+0(FP), CX
	TESTQ CX, CX
	JZ   nogoid
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
	MOVQ AX, goid+24(FP)
	RET
nogoid:
	MOVQ $0, goid+24(FP)
	RET

// func curGoid() int64
TEXT ·curGoid(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ ·goidOff(SB), CX
	TESTQ CX, CX
	JZ   none
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
	MOVQ AX, ret+0(FP)
	RET
none:
	MOVQ $0, ret+0(FP)
	RET
