#include "textflag.h"

// func fpCallers(pcs *uintptr, n int) int
//
// Walks the frame-pointer chain of the calling goroutine and stores up to n
// return PCs, starting with the return address of fpCallers's caller (the
// caller's own frame is skipped). With no frame of its own, BP here is the
// caller's frame pointer: [BP] is the next frame pointer up, [BP+8] the
// return address into that frame. Go keeps frame pointers on amd64 and the
// chain ends at 0 at the goroutine's first frame. Asynchronous preemption
// never stops assembly, and nothing here can grow the stack, so the chain
// cannot move under the walk.
TEXT ·fpCallers(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ pcs+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ BP, SI
	XORQ AX, AX
loop:
	CMPQ AX, CX
	JGE  done
	TESTQ SI, SI
	JZ   done
	MOVQ 8(SI), DX
	TESTQ DX, DX
	JZ   done
	MOVQ DX, (DI)(AX*8)
	INCQ AX
	MOVQ 0(SI), DX
	// The chain runs towards higher addresses; anything else ends it.
	CMPQ DX, SI
	JBE  done
	MOVQ DX, SI
	JMP  loop
done:
	MOVQ AX, ret+16(FP)
	RET
