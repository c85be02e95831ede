#include "go_asm.h"
#include "textflag.h"

// func fpCallers(pcs *uintptr, n, skip int) int
//
// Walks the frame-pointer chain of the calling goroutine over up to n
// frames, starting with the return address of fpCallers's caller (the
// caller's own frame is skipped), and stores the return PCs of all but the
// first skip of them; it returns how many it stored. With no frame of its
// own, BP here is the caller's frame pointer: [BP] is the next frame pointer
// up, [BP+8] the return address into that frame. Go keeps frame pointers on
// amd64 and the chain ends at 0 at the goroutine's first frame. Asynchronous
// preemption never stops assembly, and nothing here can grow the stack, so
// the chain cannot move under the walk.
TEXT ·fpCallers(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ pcs+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ skip+16(FP), BX
	MOVQ BP, SI
	XORQ AX, AX // frames walked
	XORQ R8, R8 // PCs stored
loop:
	CMPQ AX, CX
	JGE  done
	TESTQ SI, SI
	JZ   done
	MOVQ 8(SI), DX
	TESTQ DX, DX
	JZ   done
	CMPQ AX, BX
	JLT  next
	MOVQ DX, (DI)(R8*8)
	INCQ R8
next:
	INCQ AX
	MOVQ 0(SI), DX
	// The chain runs towards higher addresses; anything else ends it.
	CMPQ DX, SI
	JBE  done
	MOVQ DX, SI
	JMP  loop
done:
	MOVQ R8, ret+24(FP)
	RET

// func fpHash(n, skip int) uint64
//
// Walks the frame-pointer chain as fpCallers does (the same frames, the
// same skip, the same end) and returns Stack.Hash of the PCs fpCallers
// would store, without storing them (fpHashWalk).
TEXT ·fpHash(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ n+0(FP), CX
	MOVQ skip+8(FP), BX
	MOVQ BP, SI
	CALL fpHashWalk<>(SB)
	MOVQ R9, ret+16(FP)
	RET

// func CallerID() uint64
//
// fpHash(MaxFrames-2, 0) from its caller's frame: the stack of the caller
// of the function that called CallerID, as Capture(1) stores it when
// called from a function that function calls (stack.go).
TEXT ·CallerID(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ $(const_MaxFrames-2), CX
	XORQ BX, BX
	MOVQ BP, SI
	CALL fpHashWalk<>(SB)
	MOVQ R9, ret+0(FP)
	RET

// fpHashWalk: from the frame pointer SI, skip BX frames, then hash the
// return PCs of up to CX-BX frames, as Stack.Hash does, into R9: the PCs
// in turn to lane a (R9, times K1) and lane b (R10, times K2), then
// hashEnd. The lanes do not depend on the chain's loads, so the
// multiplications run under them; the loop is unrolled by the two lanes.
// Clobbers AX-DX, SI, R8-R12.
TEXT fpHashWalk<>(SB), NOSPLIT|NOFRAME, $0-0
	SUBQ BX, CX // PCs left to hash: n - skip
	XORQ R8, R8 // PCs hashed
	MOVQ $0x9e3779b97f4a7c15, R11 // K1
	MOVQ $0xbf58476d1ce4e5b9, R12 // K2
	MOVQ R12, R9 // lane a
	MOVQ R11, R10 // lane b
	// A frame counts if SI is not 0 and its return address is not 0, as in
	// fpCallers; the next frame pointer must be above this one.
	TESTQ SI, SI
	JZ   hdone
hskip:
	TESTQ BX, BX
	JLE  hlanea
	CMPQ 8(SI), $0
	JEQ  hdone
	DECQ BX
	MOVQ 0(SI), DX
	CMPQ DX, SI
	JBE  hdone
	MOVQ DX, SI
	JMP  hskip
hlanea:
	TESTQ CX, CX
	JLE  hdone
	MOVQ 8(SI), DX
	TESTQ DX, DX
	JZ   hdone
	XORQ DX, R9
	IMULQ R11, R9
	INCQ R8
	DECQ CX
	MOVQ 0(SI), DX
	CMPQ DX, SI
	JBE  hdone
	MOVQ DX, SI
	// lane b
	TESTQ CX, CX
	JLE  hdone
	MOVQ 8(SI), DX
	TESTQ DX, DX
	JZ   hdone
	XORQ DX, R10
	IMULQ R12, R10
	INCQ R8
	DECQ CX
	MOVQ 0(SI), DX
	CMPQ DX, SI
	JBE  hdone
	MOVQ DX, SI
	JMP  hlanea
hdone:
	// hashEnd: h = a ^ rotr(b, 29) ^ n; h ^= h>>31; h *= K2; h ^= h>>29;
	// 0 becomes 1.
	RORQ $29, R10
	XORQ R10, R9
	XORQ R8, R9
	MOVQ R9, DX
	SHRQ $31, DX
	XORQ DX, R9
	IMULQ R12, R9
	MOVQ R9, DX
	SHRQ $29, DX
	XORQ DX, R9
	MOVQ $1, DX
	TESTQ R9, R9
	CMOVQEQ DX, R9
	RET
