//go:build !nolockwatch && arm64 && !race

package sync

// raceOn says the fast paths are on: this build has no race detector.
const raceOn = false

// lockFast is Lock's fast path (fast_arm64.s), else lockSlowPathOf. Its
// argument escapes, as sync's Lock's does (the slow path may wait on it,
// and record it in the records mode).
func lockFast(m *Mutex)

// lockSlowPathOf is m.lockSlowPath, for the assembly, or in the records
// mode m.lockRecords itself: one frame fewer between the program's call of
// Lock and the records function, which walks them for the site.
//
//lint:ignore U1000 called from the assembly (fast_arm64.s)
//go:norace
func lockSlowPathOf(m *Mutex) {
	if records {
		m.lockRecords()
		return
	}
	m.lockSlowPath()
}
