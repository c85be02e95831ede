package lockreg

import (
	"errors"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

var (
	// ErrOwnerDead is returned, with the lock held, by Lock and TryLock under
	// the Recover policy when the previous holder died holding the lock. What
	// the lock protected may be half-updated: repair it before unlocking.
	ErrOwnerDead = errors.New("lockreg: owner died holding the lock")

	// ErrNotHeld is returned by Unlock when this process does not hold the lock.
	ErrNotHeld = errors.New("lockreg: unlock of a lock this process does not hold")

	// ErrFull is returned when a table of the arena (processes, locks) is full.
	ErrFull = errors.New("lockreg: registry full")

	// ErrClosed is returned by operations on a closed Registry.
	ErrClosed = errors.New("lockreg: registry closed")

	// Errors of a run directory or arena that cannot be used (Open returns
	// them wrapped in a descriptive error): match with errors.Is.
	ErrNotRun  = arena.ErrNotRun
	ErrCorrupt = arena.ErrCorrupt
	ErrVersion = arena.ErrVersion
	ErrOwner   = arena.ErrOwner
	ErrSymlink = arena.ErrSymlink
)
