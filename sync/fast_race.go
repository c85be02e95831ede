//go:build !nolockwatch && (amd64 || arm64) && race

package sync

// raceOn says the fast paths are off: under the race detector every call
// is sync's own, with its race annotations.
const raceOn = true

//go:norace
func lockFast(m *Mutex) { m.lockSlowPath() }
