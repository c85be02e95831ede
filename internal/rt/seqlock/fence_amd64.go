//go:build gc

package seqlock

import "sync/atomic"

// The amd64 plain-store trick, the one place it is built (amd64 && gc): no
// fence at all. amd64's memory model (TSO) shows one core's stores to every
// other core in program order, and gc keeps stores in program order; see the
// package doc.

// StoreFence orders the stores before it before the stores after it:
// nothing to do on amd64 built by gc.
func StoreFence() {}

// keepOdd32 keeps a write's odd store from being removed as dead (the
// package doc says why): an atomic load of the word reads it, at the cost of
// an L1 hit.
func keepOdd32(p *atomic.Uint32) { _ = p.Load() }

func keepOdd64(p *atomic.Uint64) { _ = p.Load() }
