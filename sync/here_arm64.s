//go:build !nolockwatch

#include "textflag.h"

// func callerInfo(off uintptr, pcs *framePCs, n int) (goid int64)
//
// With no frame of its own, R29 here is the caller's frame pointer:
// 8(R29) is the caller's saved return address, 0(R29) the frame pointer of
// the function it returns to, whose +8 is that one's, and so on (the
// layout the runtime's frame-pointer unwinder reads on arm64). A link that
// does not run towards higher addresses (the chain's end, 0) ends the
// walk, and the rest of pcs is 0. g (R28) is the current g; off, found and
// verified by internal/rt/record, is where its goroutine id lives.
TEXT ·callerInfo(SB), NOSPLIT|NOFRAME, $0-32
	MOVD pcs+8(FP), R5
	MOVD n+16(FP), R7
	MOVD R29, R1
	MOVD $0, R6
walk:
	MOVD 8(R1), R0
	MOVD R0, (R5)(R6<<3)
	ADD  $1, R6
	CMP  R7, R6
	BHS  walked
	MOVD 0(R1), R2
	CMP  R1, R2
	BLS  zero
	MOVD R2, R1
	B    walk
zero:
	MOVD ZR, (R5)(R6<<3)
	ADD  $1, R6
	CMP  R7, R6
	BLO  zero
walked:
	MOVD off+0(FP), R3
	CBZ  R3, nogoid
	MOVD (g)(R3), R4
	MOVD R4, goid+24(FP)
	RET
nogoid:
	MOVD ZR, goid+24(FP)
	RET

// func curGoid() int64
TEXT ·curGoid(SB), NOSPLIT|NOFRAME, $0-8
	MOVD ·goidOff(SB), R3
	CBZ  R3, none
	MOVD (g)(R3), R4
	MOVD R4, ret+0(FP)
	RET
none:
	MOVD ZR, ret+0(FP)
	RET
