//go:build amd64 && !race

package inproc

import (
	"sync/atomic"
	"unsafe"
)

// storeCell stores a held-lock cell with a plain move (with the garbage
// collector's write barrier, as any pointer store): only the goroutine whose
// lock it names writes a cell while it is in use, and readers check what a
// cell names against the lock's own records (order.go), so the cell needs
// no full barrier (an XCHG here, the cost of an uncontended Lock's CAS).
// See internal/record's relaxed_amd64.go for the ordering argument.
func storeCell(c *atomic.Pointer[State], s *State) {
	*(**State)(unsafe.Pointer(c)) = s
}

// storeN stores a bucket's count of cells in use, as storeCell.
func storeN(n *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(n)) = v }
