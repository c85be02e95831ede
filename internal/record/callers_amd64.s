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
