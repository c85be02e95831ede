//go:build !(linux && (amd64 || arm64))

package inproc

// sharedArena is nil: shared records are made on Linux (amd64, arm64)
// only; elsewhere they stay in the process (inGo).
func sharedArena() *arenaT { return nil }
