//go:build !amd64 || !gc || race

package lockreg

import "sync/atomic"

// clearCell empties a held-lock cell (order.go); see cell_plain.go.
func clearCell(p *atomic.Uint32) { p.Store(0) }
