#include "textflag.h"

// Atomic operations the race detector does not see (quiet.go): assembly is
// not instrumented, so a CAS here is no happens-before edge between the
// program's goroutines.

// func cas64(p *uint64, old, new uint64) bool
TEXT ·cas64(SB), NOSPLIT|NOFRAME, $0-25
	MOVQ p+0(FP), BX
	MOVQ old+8(FP), AX
	MOVQ new+16(FP), CX
	LOCK
	CMPXCHGQ CX, 0(BX)
	SETEQ ret+24(FP)
	RET

// func add64(p *uint64, d uint64) uint64
TEXT ·add64(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ p+0(FP), BX
	MOVQ d+8(FP), AX
	MOVQ AX, CX
	LOCK
	XADDQ AX, 0(BX)
	ADDQ CX, AX
	MOVQ AX, ret+16(FP)
	RET


// func loadBarrier()
TEXT ·loadBarrier(SB), NOSPLIT|NOFRAME, $0-0
	RET

// func cas32(p *uint32, old, new uint32) bool
TEXT ·cas32(SB), NOSPLIT|NOFRAME, $0-17
	MOVQ p+0(FP), BX
	MOVL old+8(FP), AX
	MOVL new+12(FP), CX
	LOCK
	CMPXCHGL CX, 0(BX)
	SETEQ ret+16(FP)
	RET
