//go:build !nolockwatch && !race

#include "textflag.h"

// func lockFast(m *Mutex)
//
// Lock's fast path: if fastOff is set (the owner mode), sync's
// compare-and-swap of m's state word from 0 (unlocked, no waiter) to 1
// (locked), as an acquiring load-exclusive and a releasing store-exclusive
// (the ordering of sync's own, and of its LL/SC loop on a core without the
// LSE atomics: this one runs on every ARMv8.0 core), then the goroutine id
// (at fastOff in g, read before) into m's owner word, 8 bytes in. Else, or
// if the mutex is in use, m.lockSlowPath (in the records mode, the
// records). It has no frame: the slow path is a tail call, with m where it
// is, as lockSlowPathOf's argument.
TEXT ·lockFast(SB), NOSPLIT|NOFRAME, $0-8
	MOVD m+0(FP), R0
	MOVD ·fastOff(SB), R8
	CBZ  R8, slow
	MOVD (g)(R8), R4
	MOVW $1, R2
again:
	LDAXRW (R0), R3
	CBNZW R3, busy
	STLXRW R2, (R0), R5
	CBNZW R5, again
	MOVD R4, 8(R0)
	RET
busy:
	CLREX
slow:
	B    ·lockSlowPathOf(SB)
