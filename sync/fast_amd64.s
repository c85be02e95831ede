//go:build !nolockwatch && !race

#include "textflag.h"

// func lockFast(m *Mutex)
//
// Lock's fast path: if fastOff is set (the owner mode), sync's
// compare-and-swap of m's state word from 0 (unlocked, no waiter) to 1
// (locked), then the goroutine id (at fastOff in the current g) into m's
// owner word, 8 bytes in. Else, or if the mutex is in use, m.lockSlowPath.
// The id is read before the compare-and-swap: its two loads then do not
// wait for the locked instruction, which orders every load after it. It
// has no frame: the slow path is a tail call, with m where it is, as
// lockSlowPathOf's argument.
TEXT ·lockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ m+0(FP), DI
	MOVQ ·fastOff(SB), R8
	TESTQ R8, R8
	JZ   slow
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
