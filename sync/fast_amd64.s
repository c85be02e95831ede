//go:build !nolockwatch && !race

#include "textflag.h"
#include "funcdata.h"

// func lockFast(m *Mutex)
//
// Lock's fast path: if fastOff is set (the owner mode), sync's
// compare-and-swap of m's state word from 0 (unlocked, no waiter) to 1
// (locked), then the goroutine id (at fastOff in the current g) into m's
// owner word, 8 bytes in. Else, or if the mutex is in use, m.lockSlowPath;
// in the records mode, lockRecordsEntry. The id is read before the
// compare-and-swap: its two loads then do not wait for the locked
// instruction, which orders every load after it. It has no frame: the slow
// paths are tail calls, with m where it is, as their argument.
TEXT ·lockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ m+0(FP), DI
	MOVQ ·fastOff(SB), R8
	TESTQ R8, R8
	JZ   notfast
	MOVQ (TLS), DX
	MOVQ (DX)(R8*1), DX
	XORL AX, AX
	MOVL $1, CX
	LOCK
	CMPXCHGL CX, 0(DI)
	JNE  slow
	MOVQ DX, 8(DI)
	RET
slow:
	JMP  ·lockSlowPathOf(SB)
notfast:
	CMPB ·records(SB), $0
	JEQ  slow
	JMP  ·lockRecordsEntry(SB)

// func lockRecordsEntry(m *Mutex)
//
// Lock in the records mode: lockRecordsAt(m, &pcs, goid), where pcs[1] is
// the return address of the call of lockFast (lockFast jumped here, so it
// is this function's return address), pcs[2] to pcs[4] the three above
// it, by the frame pointers (0 past the chain's end; pcs[0] and pcs[5]
// are left 0), and goid the goroutine id (0 if goidOff is 0). The site is
// then a few loads away, where the records function would walk six frames
// up to it.
TEXT ·lockRecordsEntry(SB), NOSPLIT, $72-8
	NO_LOCAL_POINTERS
	MOVQ m+0(FP), AX
	MOVQ AX, 0(SP)
	LEAQ 24(SP), DI  // pcs, 48 bytes
	MOVQ DI, 8(SP)
	MOVQ $0, 0(DI)
	MOVQ $0, 16(DI)
	MOVQ $0, 24(DI)
	MOVQ $0, 32(DI)
	MOVQ $0, 40(DI)
	MOVQ 8(BP), AX   // BP is this frame's: 8(BP) its return address
	MOVQ AX, 8(DI)
	MOVQ BP, CX
	MOVQ $2, R8
walk:
	MOVQ 0(CX), DX   // the caller's frame pointer
	CMPQ DX, CX
	JBE  walked
	MOVQ DX, CX
	MOVQ 8(CX), AX
	MOVQ AX, (DI)(R8*8)
	INCQ R8
	CMPQ R8, $5
	JB   walk
walked:
	MOVQ ·goidOff(SB), CX
	XORL AX, AX
	TESTQ CX, CX
	JZ   call
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
call:
	MOVQ AX, 16(SP)
	CALL ·lockRecordsAt(SB)
	RET
