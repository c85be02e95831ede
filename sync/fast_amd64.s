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
// Lock in the records mode: lockRecordsAt(m, r, fp, goid), where r is the
// return address of the call of lockFast (lockFast jumped here, so it is
// this function's return address), fp the frame pointer of the function
// that made that call (the one this frame saved), from which lockRecordsAt
// reads the return addresses above only as far as it needs, and goid the
// goroutine id (0 if goidOff is 0).
TEXT ·lockRecordsEntry(SB), NOSPLIT, $32-8
	NO_LOCAL_POINTERS
	MOVQ m+0(FP), AX
	MOVQ AX, 0(SP)
	MOVQ 8(BP), AX   // BP is this frame's: 8(BP) its return address,
	MOVQ AX, 8(SP)
	MOVQ 0(BP), AX   // 0(BP) the caller's frame pointer
	MOVQ AX, 16(SP)
	MOVQ ·goidOff(SB), CX
	XORL AX, AX
	TESTQ CX, CX
	JZ   call
	MOVQ (TLS), AX
	MOVQ (AX)(CX*1), AX
call:
	MOVQ AX, 24(SP)
	CALL ·lockRecordsAt(SB)
	RET
