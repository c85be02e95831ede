//go:build !amd64 || !gc || race

package lockreg

import "sync/atomic"

// storeCell writes a held-lock cell or count (order.go); see cell_plain.go.
func storeCell(p *atomic.Uint32, v uint32) { p.Store(v) }
