//go:build !((amd64 || arm64) && gc)

package seqlock

import "sync/atomic"

// Other architectures, and compilers other than gc (gccgo, gollvm), owe us
// neither fact the plain stores rest on: every store is a sync/atomic one,
// sequentially consistent. The drop-in records nothing here (sync/off.go).

// StorePlain says whether Store32 and the rest are plain moves.
const StorePlain = false

// Store32 stores v at p for a reader in another thread; see store_plain.go.
func Store32(p *atomic.Uint32, v uint32) { p.Store(v) }

// Store64 is Store32 for a uint64.
func Store64(p *atomic.Uint64, v uint64) { p.Store(v) }

// StoreInt64 is Store32 for an int64.
func StoreInt64(p *atomic.Int64, v int64) { p.Store(v) }

// StoreUintptr is Store32 for a uintptr.
func StoreUintptr(p *atomic.Uintptr, v uintptr) { p.Store(v) }

func openOdd32(p *atomic.Uint32, v uint32)   { p.Store(v) }
func openOdd64(p *atomic.Uint64, v uint64)   { p.Store(v) }
func closeEven32(p *atomic.Uint32, v uint32) { p.Store(v) }
func closeEven64(p *atomic.Uint64, v uint64) { p.Store(v) }
