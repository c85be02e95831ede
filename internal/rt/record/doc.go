// Package record holds the pieces every lock of lockwatch records on an
// acquire, shared by the cross-process locks of lockreg and the in-process
// drop-in Mutex and RWMutex: the caller's stack (a frame-pointer walk, 40x
// cheaper than runtime.Callers), the goroutine id (read from the runtime's g
// at an offset found and verified at start-up), the clock (the runtime's
// monotonic clock, and a coarse copy of it that costs one load), and the
// in-process holder record that a reader in another goroutine copies
// without a lock.
//
// Nothing here takes a lock or allocates on the paths an acquire uses.
//
//	var st record.Stack
//	st.Capture(0)          // the stack of the caller
//	g := record.Goid()     // this goroutine's id
//	t := record.Coarse()   // now, to about a millisecond
package record
