//go:build amd64 && gc

package seqlock

import (
	"sync/atomic"
	"unsafe"
)

// StorePlain says whether the stores of this package are plain moves: on
// amd64 built by gc (see the package doc, "How the four orders are
// obtained").
const StorePlain = true

// Store32 stores v at p for a reader in another thread (a record's field, or
// the end of a write): ordered after the stores before it, as the writer's
// side of the protocol needs, and not seen by the race detector. On amd64
// built by gc it is a plain move; elsewhere a sync/atomic store. It may also
// serve a writer outside a seqlock whose stores need only program order.
//
//go:norace
func Store32(p *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(p)) = v }

// Store64 is Store32 for a uint64.
//
//go:norace
func Store64(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }

// StoreInt64 is Store32 for an int64.
//
//go:norace
func StoreInt64(p *atomic.Int64, v int64) { *(*int64)(unsafe.Pointer(p)) = v }

// StoreUintptr is Store32 for a uintptr.
//
//go:norace
func StoreUintptr(p *atomic.Uintptr, v uintptr) { *(*uintptr)(unsafe.Pointer(p)) = v }

// openOdd32 is the odd store of a write: a plain store, kept by the atomic
// load after it (the package doc says why it must be kept).
//
//go:norace
func openOdd32(p *atomic.Uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(p)) = v
	_ = p.Load()
}

//go:norace
func openOdd64(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
	_ = p.Load()
}

// loadFence orders the loads before it before the loads after it. On amd64
// loads are not reordered with loads (TSO), and gc does not move a load
// past the atomic load that follows it (an atomic load is a barrier to it).
func loadFence() {}
