//go:build !nolockwatch

#include "textflag.h"

// func callerInfo(off uintptr) (goid int64, pc, pc2 uintptr)
//
// With no frame of its own, R29 here is the caller's (Lock's) frame
// pointer: 8(R29) is Lock's saved return address, 0(R29) its caller's frame
// pointer, whose +8 is that caller's return address (the layout the
// runtime's frame-pointer unwinder reads on arm64). A link that does not
// run towards higher addresses (the chain's end, 0) gives pc2 = 0. g (R28)
// is the current g; off, found and verified by internal/rt/record, is where
// its goroutine id lives.
TEXT ·callerInfo(SB), NOSPLIT|NOFRAME, $0-32
	MOVD 8(R29), R0
	MOVD R0, pc+16(FP)
	MOVD $0, R2
	MOVD 0(R29), R1
	CMP R29, R1
	BLS nopc2
	MOVD 8(R1), R2
nopc2:
	MOVD R2, pc2+24(FP)
	MOVD off+0(FP), R3
	CBZ R3, nogoid
	MOVD (g)(R3), R4
	MOVD R4, goid+8(FP)
	RET
nogoid:
	MOVD ZR, goid+8(FP)
	RET
