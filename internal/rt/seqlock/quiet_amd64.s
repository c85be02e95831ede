#include "textflag.h"

// Atomic operations the race detector does not see (quiet.go): assembly is
// not instrumented, so a CAS here is no happens-before edge between the
// program's goroutines.

// func CAS64(p *uint64, old, new uint64) bool
TEXT ·CAS64(SB), NOSPLIT|NOFRAME, $0-25
	MOVQ p+0(FP), BX
	MOVQ old+8(FP), AX
	MOVQ new+16(FP), CX
	LOCK
	CMPXCHGQ CX, 0(BX)
	SETEQ ret+24(FP)
	RET

// func CAS32(p *uint32, old, new uint32) bool
TEXT ·CAS32(SB), NOSPLIT|NOFRAME, $0-17
	MOVQ p+0(FP), BX
	MOVL old+8(FP), AX
	MOVL new+12(FP), CX
	LOCK
	CMPXCHGL CX, 0(BX)
	SETEQ ret+16(FP)
	RET

// func Add64(p *uint64, d uint64) uint64
TEXT ·Add64(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ p+0(FP), BX
	MOVQ d+8(FP), AX
	MOVQ AX, CX
	LOCK
	XADDQ AX, 0(BX)
	ADDQ CX, AX
	MOVQ AX, ret+16(FP)
	RET

// func LoadFence()
//
// A call the compiler cannot see through: it keeps the loads before it
// before the loads after it. The CPU (TSO) does not reorder loads.
TEXT ·LoadFence(SB), NOSPLIT|NOFRAME, $0-0
	RET
