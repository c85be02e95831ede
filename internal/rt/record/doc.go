// Package record holds the pieces every lock of lockwatch records on an
// acquire, shared by the cross-process locks of lockreg and the in-process
// drop-in Mutex and RWMutex: the caller's stack (a frame-pointer walk, 40x
// cheaper than runtime.Callers), the goroutine id (read from the runtime's g
// at an offset found and verified at start-up), the clock (the runtime's
// monotonic clock, and a coarse copy of it that costs one load).
//
// Nothing here allocates on the paths an acquire uses, and only Coarse may
// take a lock: when it finds the coarse clock stale (its ticker stopped
// after a second unused), it takes the clock's mutex to read the clock and
// start the ticker again, which also takes that mutex each tick. A caller
// that must never block (a goroutine pinned to its P) does not call it.
//
//	var st record.Stack
//	st.Capture(0)          // the stack of the caller
//	g := record.Goid()     // this goroutine's id
//	t := record.Coarse()   // now, to about a millisecond
package record
