//go:build amd64 && gc && !race

package lockreg

import (
	"sync/atomic"
	"unsafe"
)

// clearCell empties a held-lock cell (order.go) with a plain move: the
// seqlock writers' argument (relaxed_amd64.go) orders it before the lock
// word's release, a CAS. Under the race detector, which tracks the cells
// (they are in the Go heap, unlike the arena), it is an atomic store
// (cell_atomic.go).
func clearCell(p *atomic.Uint32) { *(*uint32)(unsafe.Pointer(p)) = 0 }
