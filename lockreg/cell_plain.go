//go:build amd64 && gc && !race

package lockreg

import (
	"sync/atomic"
	"unsafe"
)

// storeCell writes a held-lock cell or a bucket's count (order.go) with a
// plain move, not the XCHG of an atomic store: only this process's
// goroutines read the cells, and a lost or late store only misses an edge
// (heldBucket). A clear is ordered before the lock word's release, a CAS,
// by the seqlock writers' argument (relaxed_amd64.go). Under the race
// detector, which tracks the cells (they are in the Go heap, unlike the
// arena), it is an atomic store (cell_atomic.go).
func storeCell(p *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(p)) = v }
