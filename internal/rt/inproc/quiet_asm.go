//go:build amd64 || arm64

package inproc

// cas64 is a compare-and-swap the race detector does not see (quiet_*.s).
//
//go:noescape
func cas64(p *uint64, old, new uint64) bool

// add64 adds d to *p atomically, unseen by the race detector, and returns
// the new value.
//
//go:noescape
func add64(p *uint64, d uint64) uint64

// loadBarrier orders the loads before it before those after it: a
// compiler barrier on amd64, DMB ISHLD on arm64.
func loadBarrier()

// cas32 is cas64 for 32 bits.
//
//go:noescape
func cas32(p *uint32, old, new uint32) bool
