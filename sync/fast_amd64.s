//go:build !nolockwatch && !race

#include "textflag.h"

// func lockFast(m *Mutex)
//
// Lock's fast path: if fastOff is set (the owner mode), sync's
// compare-and-swap of m's state word from 0 (unlocked, no waiter) to 1
// (locked), then the goroutine id (at fastOff in the current g) into m's
// owner word, 8 bytes in. Else, or if the mutex is in use, m.lockSlowPath.
// It has no frame: the slow path is a tail call, with m where it is, as
// lockSlowPathOf's argument.
TEXT ·lockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ m+0(FP), DI
	MOVQ ·fastOff(SB), R8
	TESTQ R8, R8
	JZ   slow
	XORL AX, AX
	MOVL $1, CX
	LOCK
	CMPXCHGL CX, 0(DI)
	JNE  slow
	MOVQ (TLS), AX
	MOVQ (AX)(R8*1), AX
	MOVQ AX, 8(DI)
	RET
slow:
	JMP  ·lockSlowPathOf(SB)

// func rlockFast(rw *RWMutex)
//
// RLock's fast path: unless rslow, sync's one read-modify-write of the
// reader count (16 bytes in), made as a compare-and-swap from a count of
// zero or more (no writer waits or holds) to one more, retried while the
// count stays so. Else rw.rlockSlowPath.
TEXT ·rlockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ rw+0(FP), DI
	CMPB ·rslow(SB), $0
	JNE  rslowpath
	MOVL 16(DI), AX
rretry:
	TESTL AX, AX
	JS   rslowpath
	LEAL 1(AX), CX
	LOCK
	CMPXCHGL CX, 16(DI)
	JNE  rretry
	RET
rslowpath:
	JMP  ·rlockSlowPathOf(SB)

// func runlockFast(rw *RWMutex)
//
// RUnlock's fast path: unless rslow, the compare-and-swap of the reader
// count from one or more (a reader holds it, no writer waits) to one
// less. Else rw.runlockSlowPath (a writer waits, or misuse: sync's fatal
// error).
TEXT ·runlockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ rw+0(FP), DI
	CMPB ·rslow(SB), $0
	JNE  uslowpath
	MOVL 16(DI), AX
uretry:
	CMPL AX, $1
	JLT  uslowpath
	LEAL -1(AX), CX
	LOCK
	CMPXCHGL CX, 16(DI)
	JNE  uretry
	RET
uslowpath:
	JMP  ·runlockSlowPathOf(SB)
