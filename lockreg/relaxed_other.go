//go:build !amd64 || !gc

package lockreg

import "sync/atomic"

// See relaxed_amd64.go: weaker memory models, and compilers other than gc,
// need sync/atomic's ordering.

func store32(p *atomic.Uint32, v uint32)    { p.Store(v) }
func store64(p *atomic.Uint64, v uint64)    { p.Store(v) }
func storeI64(p *atomic.Int64, v int64)     { p.Store(v) }
func storeOdd64(p *atomic.Uint64, v uint64) { p.Store(v) }
func storeOdd32(p *atomic.Uint32, v uint32) { p.Store(v) }
