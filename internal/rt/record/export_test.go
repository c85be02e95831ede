package record

// HoldCoarse makes the coarse clock stale and holds its mutex, as its
// ticker does for an instant and a contended restart does for longer, so
// that the next Coarse call blocks until release is called. For tests of
// callers that must not read the clock where blocking is forbidden.
func HoldCoarse() (release func()) {
	coarse.mu.Lock()
	coarse.now.Store(coarse.now.Load() | 1)
	return coarse.mu.Unlock
}
