//go:build amd64 && gc

package lockreg

import (
	"sync/atomic"
	"unsafe"
)

// Seqlock writers store with plain moves on amd64 built by gc. This rests on
// two facts that the Go memory model does not promise (by the model, a plain
// store racing with an atomic load is a data race, and nothing orders it):
//   - the hardware: amd64's memory model (TSO) makes every core see one
//     core's stores in program order;
//   - the gc compiler: it keeps stores to memory in program order (they are
//     sequenced through its memory chain, and sync/atomic calls are barriers
//     to it), and it does not remove these stores, since each goes to a
//     distinct address through a pointer it cannot see through.
// Together: a reader that sees the final even seq sees every field stored
// before it, and one that sees a field sees the odd seq stored before it,
// which is what the seqlock argument in records.go needs, without the full
// barrier (XCHG) that sync/atomic's Store costs here. Readers still load
// with sync/atomic. TestSeqlockNeverTorn checks the result on every build.
// Other compilers (gccgo, gollvm) owe us neither fact, so they, and other
// architectures, use sync/atomic stores (relaxed_other.go).

func store32(p *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(p)) = v }
func store64(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
func storeI64(p *atomic.Int64, v int64)  { *(*int64)(unsafe.Pointer(p)) = v }

// storeOdd64 is the first store of a seqlock write (the odd sequence
// number) when the writer is the only one: a plain store, kept by the atomic
// load after it. A plain store followed by the plain even store to the same
// word would be a dead store to the compiler, which removes it; the load
// reads the word, so the store stays (it costs an L1 hit, not the full
// barrier of sync/atomic's XCHG).
func storeOdd64(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
	_ = p.Load()
}

// storeOdd32 is storeOdd64 for a 32-bit sequence number.
func storeOdd32(p *atomic.Uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(p)) = v
	_ = p.Load()
}
