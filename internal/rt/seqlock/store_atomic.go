//go:build !(amd64 && gc)

package seqlock

import "sync/atomic"

// StorePlain says whether the stores of this package are plain moves: not
// here (see the package doc).
const StorePlain = false

// Store32 stores v at p for a reader in another thread; see store_plain.go.
// Here a sync/atomic store, sequentially consistent.
func Store32(p *atomic.Uint32, v uint32) { p.Store(v) }

// Store64 is Store32 for a uint64.
func Store64(p *atomic.Uint64, v uint64) { p.Store(v) }

// StoreInt64 is Store32 for an int64.
func StoreInt64(p *atomic.Int64, v int64) { p.Store(v) }

// StoreUintptr is Store32 for a uintptr.
func StoreUintptr(p *atomic.Uintptr, v uintptr) { p.Store(v) }

func openOdd32(p *atomic.Uint32, v uint32) { p.Store(v) }

func openOdd64(p *atomic.Uint64, v uint64) { p.Store(v) }

// loadFence: the reads of the records on these architectures load their
// fields with sync/atomic, sequentially consistent, which orders them.
func loadFence() {}
