//go:build !((amd64 || arm64) && gc)

package seqlock

import "sync/atomic"

// Where the drop-in records nothing (no fast path: sync/off.go) its tables
// are only read, empty, and sync/atomic serves lockreg.

// CAS64 is a compare-and-swap of *p from old to new; a full barrier.
func CAS64(p *uint64, old, new uint64) bool { return atomic.CompareAndSwapUint64(p, old, new) }

// CAS32 is CAS64 for 32 bits.
func CAS32(p *uint32, old, new uint32) bool { return atomic.CompareAndSwapUint32(p, old, new) }

// Add64 adds d to *p atomically and returns the new value.
func Add64(p *uint64, d uint64) uint64 { return atomic.AddUint64(p, d) }

var fenceWord atomic.Uint64

// StoreFence orders the stores before it before the stores after it: here
// a sequentially consistent read-modify-write.
func StoreFence() { fenceWord.Add(0) }

// LoadFence orders the loads before it before the loads after it.
func LoadFence() { fenceWord.Add(0) }
