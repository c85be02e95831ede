//go:build (amd64 || arm64) && gc

package seqlock

import (
	"sync/atomic"
	"unsafe"
)

// On amd64 and arm64 built by gc a store for a reader in another thread is
// a plain move, unseen by the race detector; the writer's fences (none on
// amd64, DMB ISHST on arm64: fence_*.go) order the stores of a write. See
// the package doc, "How the four orders are obtained".

// StorePlain says whether Store32 and the rest are plain moves.
const StorePlain = true

// Store32 stores v at p for a reader in another thread (a record's field),
// unseen by the race detector: a plain move here, a sync/atomic store
// elsewhere. Between a write's odd and even stores it is ordered by them;
// outside a seqlock, on amd64 it is ordered after the stores before it and
// before those after it, and on arm64 only StoreFence orders it.
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

// openOdd32 is the odd store of a write, then what keeps it and orders it
// before the fields (keepOdd32).
//
//go:norace
func openOdd32(p *atomic.Uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(p)) = v
	keepOdd32(p)
}

//go:norace
func openOdd64(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
	keepOdd64(p)
}

// closeEven32 orders the fields before the even store that ends a write,
// and makes it.
//
//go:norace
func closeEven32(p *atomic.Uint32, v uint32) {
	StoreFence()
	*(*uint32)(unsafe.Pointer(p)) = v
}

//go:norace
func closeEven64(p *atomic.Uint64, v uint64) {
	StoreFence()
	*(*uint64)(unsafe.Pointer(p)) = v
}
