//go:build !nolockwatch && arm64 && !race

package sync

import "sync/atomic"

// raceOn says the fast paths are on: this build has no race detector.
const raceOn = false

// lockFast is Lock's fast path: sync's compare-and-swap of the state word,
// then the goroutine id (read before it) into the owner word; else
// m.lockSlowPath.
//
//go:norace
func lockFast(m *Mutex) {
	if fastOff != 0 {
		g := curGoid()
		if atomic.CompareAndSwapInt32(mutexState(m), 0, 1) {
			m.owner = g
			return
		}
	}
	m.lockSlowPath()
}
