//go:build !amd64 || race

package record

import "sync/atomic"

// See relaxed_amd64.go: weaker memory models, and the race detector's, need
// sync/atomic's ordering.

// Relaxed says whether stores here are plain moves.
const Relaxed = false

func store32(p *atomic.Uint32, v uint32)        { p.Store(v) }
func store64(p *atomic.Uint64, v uint64)        { p.Store(v) }
func storeI64(p *atomic.Int64, v int64)         { p.Store(v) }
func storeUintptr(p *atomic.Uintptr, v uintptr) { p.Store(v) }

// Store32 and the rest are the record stores, for the lock tables.
func Store32(p *atomic.Uint32, v uint32)        { store32(p, v) }
func Store64(p *atomic.Uint64, v uint64)        { store64(p, v) }
func StoreI64(p *atomic.Int64, v int64)         { storeI64(p, v) }
func StoreUintptr(p *atomic.Uintptr, v uintptr) { storeUintptr(p, v) }
