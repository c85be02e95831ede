//go:build amd64 && !race

package record

import (
	"sync/atomic"
	"unsafe"
)

// Record writers store with plain moves on amd64. Its memory model (TSO)
// makes every core see one core's stores in program order, and the gc
// compiler keeps stores in program order too (they are sequenced through its
// memory chain, and sync/atomic calls are barriers to it): a guarantee of
// this compiler on this architecture, not of the Go memory model. So a
// reader that sees a record's final counter sees every field stored before
// it: what the protocols in holder.go and the lock tables need, without the
// full barrier (XCHG) that a sync/atomic Store costs here. Readers load with
// sync/atomic. Under the race detector (whose model is Go's, not the
// CPU's) and on other architectures the stores are sync/atomic stores
// (relaxed_other.go).

// Relaxed says whether stores here are plain moves.
const Relaxed = true

func store32(p *atomic.Uint32, v uint32)        { *(*uint32)(unsafe.Pointer(p)) = v }
func store64(p *atomic.Uint64, v uint64)        { *(*uint64)(unsafe.Pointer(p)) = v }
func storeI64(p *atomic.Int64, v int64)         { *(*int64)(unsafe.Pointer(p)) = v }
func storeUintptr(p *atomic.Uintptr, v uintptr) { *(*uintptr)(unsafe.Pointer(p)) = v }

// Store32 and the rest are the record stores, for the lock tables.
func Store32(p *atomic.Uint32, v uint32)        { store32(p, v) }
func Store64(p *atomic.Uint64, v uint64)        { store64(p, v) }
func StoreI64(p *atomic.Int64, v int64)         { storeI64(p, v) }
func StoreUintptr(p *atomic.Uintptr, v uintptr) { storeUintptr(p, v) }
