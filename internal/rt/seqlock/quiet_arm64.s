#include "textflag.h"

// Atomic operations the race detector does not see (quiet.go): assembly is
// not instrumented, so a CAS here is no happens-before edge between the
// program's goroutines. LDAXR/STLXR loops run on every ARMv8.0 core.

// func CAS64(p *uint64, old, new uint64) bool
TEXT ·CAS64(SB), NOSPLIT|NOFRAME, $0-25
	MOVD p+0(FP), R0
	MOVD old+8(FP), R1
	MOVD new+16(FP), R2
again:
	LDAXR (R0), R3
	CMP R1, R3
	BNE fail
	STLXR R2, (R0), R4
	CBNZ R4, again
	MOVD $1, R5
	MOVB R5, ret+24(FP)
	RET
fail:
	CLREX
	MOVB ZR, ret+24(FP)
	RET

// func CAS32(p *uint32, old, new uint32) bool
TEXT ·CAS32(SB), NOSPLIT|NOFRAME, $0-17
	MOVD p+0(FP), R0
	MOVWU old+8(FP), R1
	MOVWU new+12(FP), R2
again:
	LDAXRW (R0), R3
	CMPW R1, R3
	BNE fail
	STLXRW R2, (R0), R4
	CBNZ R4, again
	MOVD $1, R5
	MOVB R5, ret+16(FP)
	RET
fail:
	CLREX
	MOVB ZR, ret+16(FP)
	RET

// func Add64(p *uint64, d uint64) uint64
TEXT ·Add64(SB), NOSPLIT|NOFRAME, $0-24
	MOVD p+0(FP), R0
	MOVD d+8(FP), R1
again:
	LDAXR (R0), R2
	ADD R1, R2, R2
	STLXR R2, (R0), R3
	CBNZ R3, again
	MOVD R2, ret+16(FP)
	RET

// func StoreFence()
//
// Orders the stores before it before the stores after it (DMB ISHST).
TEXT ·StoreFence(SB), NOSPLIT|NOFRAME, $0-0
	DMB $0xa
	RET

// func LoadFence()
//
// Orders the loads before it before the loads after it (DMB ISHLD).
TEXT ·LoadFence(SB), NOSPLIT|NOFRAME, $0-0
	DMB $0x9
	RET
