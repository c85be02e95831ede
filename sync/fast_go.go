//go:build !nolockwatch && arm64 && !race

package sync

import "sync/atomic"

// raceOn says the fast paths are off: this build has no race detector.
const raceOn = false

// lockFast is Lock's fast path: sync's compare-and-swap of the state word,
// then the goroutine id into the owner word; else m.lockSlowPath.
//
//go:norace
func lockFast(m *Mutex) {
	if fastOff != 0 && atomic.CompareAndSwapInt32(mutexState(m), 0, 1) {
		m.owner = curGoid()
		return
	}
	m.lockSlowPath()
}

// rlockFast is RLock's fast path: the compare-and-swap of the reader count
// from zero or more to one more; else rw.rlockSlowPath.
//
//go:norace
func rlockFast(rw *RWMutex) {
	if !rslow {
		for c := atomic.LoadInt32(&rw.rw.readers); c >= 0; c = atomic.LoadInt32(&rw.rw.readers) {
			if atomic.CompareAndSwapInt32(&rw.rw.readers, c, c+1) {
				return
			}
		}
	}
	rw.rlockSlowPath()
}

// runlockFast is RUnlock's fast path: the compare-and-swap of the reader
// count from one or more to one less; else rw.runlockSlowPath.
//
//go:norace
func runlockFast(rw *RWMutex) {
	if !rslow {
		for c := atomic.LoadInt32(&rw.rw.readers); c >= 1; c = atomic.LoadInt32(&rw.rw.readers) {
			if atomic.CompareAndSwapInt32(&rw.rw.readers, c, c-1) {
				return
			}
		}
	}
	rw.runlockSlowPath()
}
