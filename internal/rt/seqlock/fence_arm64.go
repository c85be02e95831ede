//go:build gc

package seqlock

import "sync/atomic"

// StoreFence orders the stores before it before the stores after it (DMB
// ISHST, quiet_arm64.s).
func StoreFence()

// keepOdd32 orders a write's odd store before its field stores, and, being
// a call, keeps the compiler from removing the store as dead.
func keepOdd32(*atomic.Uint32) { StoreFence() }

func keepOdd64(*atomic.Uint64) { StoreFence() }
