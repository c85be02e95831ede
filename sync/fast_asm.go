//go:build !nolockwatch && amd64 && !race

package sync

// raceOn says the fast paths are off: this build has no race detector.
const raceOn = false

// lockFast is Lock's fast path (fast_amd64.s), else lockSlowPathOf.
//
//go:noescape
func lockFast(m *Mutex)

// lockSlowPathOf is m.lockSlowPath, for the assembly.
//
//go:norace
func lockSlowPathOf(m *Mutex) { m.lockSlowPath() }

// rlockFast and runlockFast are RLock's and RUnlock's fast paths
// (fast_amd64.s), else rlockSlowPathOf and runlockSlowPathOf.
//
//go:noescape
func rlockFast(rw *RWMutex)

//go:noescape
func runlockFast(rw *RWMutex)

//go:norace
func rlockSlowPathOf(rw *RWMutex) { rw.rlockSlowPath() }

//go:norace
func runlockSlowPathOf(rw *RWMutex) { rw.runlockSlowPath() }
