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
// Lock in the records mode: lockRecordsAt(m, r0, r1, r2, goid), where r0
// is the return address of the program's call of lockFast (lockFast
// jumped here, so it is this function's return address), r1 and r2 the
// two above it, by the frame pointers (0 past the chain's end), and goid
// the goroutine id (0 if goidOff is 0). The site is then three loads away,
// where the records function would walk five frames up to it.
TEXT ·lockRecordsEntry(SB), NOSPLIT, $40-8
	NO_LOCAL_POINTERS
	MOVQ m+0(FP), AX
	MOVQ AX, 0(SP)
	MOVQ 8(BP), AX   // r0: BP is this frame's, 0(BP) the caller's BP
	MOVQ AX, 8(SP)
	MOVQ 0(BP), CX
	XORL AX, AX
	XORL DX, DX
	CMPQ CX, BP
	JBE  top
	MOVQ 8(CX), AX   // r1
	MOVQ 0(CX), R9
	CMPQ R9, CX
	JBE  top
	MOVQ 8(R9), DX   // r2
top:
	MOVQ AX, 16(SP)
	MOVQ DX, 24(SP)
	MOVQ ·goidOff(SB), CX
	XORL AX, AX
	TESTQ CX, CX
	JZ   call
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
call:
	MOVQ AX, 32(SP)
	CALL ·lockRecordsAt(SB)
	RET
