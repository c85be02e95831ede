//go:build (amd64 || arm64) && gc

package seqlock

// Quiet atomics: read-modify-writes in assembly of our own, which the race
// detector does not instrument, so that a claim of a record is no
// happens-before edge between the program's goroutines (docs/dropin.md, "No
// happens-before edge"). Elsewhere they are sync/atomic (quiet_other.go),
// where the drop-in records nothing.

// CAS64 is a compare-and-swap of *p from old to new; a full barrier.
//
//go:noescape
func CAS64(p *uint64, old, new uint64) bool

// CAS32 is CAS64 for 32 bits.
//
//go:noescape
func CAS32(p *uint32, old, new uint32) bool

// Add64 adds d to *p atomically and returns the new value.
//
//go:noescape
func Add64(p *uint64, d uint64) uint64

// LoadFence orders the loads before it before the loads after it: a
// compiler barrier on amd64, DMB ISHLD on arm64.
func LoadFence()
