// Package seqlock is the one protocol by which lockwatch's records are written
// by one goroutine (or process) and copied by others without a lock: lockreg's
// holder, waiter and process records and its event rings, the drop-in's
// holder, waiter and reader records. It also holds the stores that order
// without a barrier where the hardware gives the order for free.
//
// # The protocol
//
// A record is a sequence word (Seq32 or Seq64) and fields. It has one writer
// at a time: the lock's holder, or the goroutine that claimed the record (by a
// CAS on a key, or on the sequence word itself with Claim).
//
//   - A write makes the sequence odd (Begin, BeginAt, Claim), stores the
//     fields (Store32 and the rest, or plain stores where the record is
//     invisible to the race detector), and makes the sequence even again, one
//     step past the odd value (End).
//   - A read loads the sequence (Load), gives up on this try if it is odd,
//     loads the fields, and keeps its copy only if the sequence is still the
//     value it loaded first (Valid). Read does this with a bounded number of
//     tries.
//
// Why a kept copy is never torn. Writes to one record are serialized (one
// writer at a time; the next writer takes over through the lock or the claim,
// which orders it after the previous one). Say the reader's first load L1 and
// its last load L2 both saw the even value v, stored by the write W0 that
// ended with it, and a field load F between them saw the store f of write W:
//   - W after W0: W made the sequence odd (o > v) before storing f. F saw f,
//     and L2 is ordered after F, so L2 sees o or a later value, which is
//     never v, since the sequence only grows. So this cannot be.
//   - W before W0, and W0 stored that field too (f'): f' precedes W0's even
//     store, which L1 saw, and F is ordered after L1, so F sees f' or a later
//     store, not f. So this cannot be either.
//
// So every field of a kept copy holds the value W0 left (its own store, or an
// earlier write's to a field W0 did not write): the record as it was when v
// was stored. The argument uses four orders: the writer's odd store before
// its field stores, its field stores before its even store, the reader's
// first load before its field loads, and its field loads before its last
// load. Processes that share a mapping are threads sharing memory as far as
// the CPU is concerned, so it holds across processes.
//
// Sequence numbers only grow, so a value seen twice means no write between:
// also across a release and a new claim of the record, which is why a waiter
// record's sequence serves as a stamp of one wait (lockreg's self-wait check).
// A 32-bit sequence wraps after 2^31 writes; a reader would have to be
// suspended between two loads a few nanoseconds apart while exactly a
// multiple of that many writes went by.
//
// A writer that dies mid-write (a process killed) leaves the sequence odd.
// Readers never wait for it: each read is bounded (Read's tries; lockreg's
// snapshot also shares a retry budget among all its records) and a record
// that stays odd is reported as torn. The next writer starts from the next
// even value (Begin), so the record heals on its next write.
//
// # How the four orders are obtained
//
// Readers load the sequence with sync/atomic, and Valid calls LoadFence
// before its load, so that field loads, plain or atomic, stay before it (on
// amd64 a call the compiler cannot see through, the CPU keeping loads in
// order; on arm64 DMB ISHLD).
//
// On amd64 built by gc the writer's stores are plain moves (StorePlain):
// amd64's memory model (TSO) shows one core's stores to every other core in
// program order, and the gc compiler keeps stores to memory in program order
// (they are threaded through its memory chain, and sync/atomic operations
// are barriers to it). That is a property of this compiler on this
// architecture, not a promise of the Go memory model (by the model a plain
// store racing with an atomic load is a data race), so it is built for
// amd64 && gc only (fence_amd64.go), the one place the trick lives. On arm64
// built by gc the stores are plain too, and the writer's side adds the
// fences the hardware needs (DMB ISHST after the odd store and before the
// even one). Everything else (other architectures, gccgo, gollvm) uses
// sync/atomic stores, sequentially consistent.
//
// The odd store must survive the compiler: a plain store to the sequence
// followed by the plain even store to the same word is a dead store, which
// gc removes, and then readers accept torn copies (a first version of
// lockreg did exactly that; its TestSeqlockNeverTorn found 3,158 torn copies
// in 3 million reads). So on amd64 the odd store is followed by an atomic load
// of the same word: the load reads the store, so the compiler keeps it, at
// the cost of an L1 hit instead of the full barrier (XCHG) of an atomic
// store. On arm64 the fence after it, a call, keeps it.
//
// # Unseen by the race detector
//
// The drop-in's records must add no happens-before edge between the
// program's goroutines (docs/dropin.md). So the writer's side is invisible
// to the race detector on amd64 and arm64: plain stores in functions it does
// not instrument (//go:norace), and CAS32, CAS64 and Add64, in assembly of
// our own, for claims. Readers' sync/atomic loads make no edge either: no
// release is ever made on a record's words. The tests that check that no copy
// is torn run in a child built without the race detector, whose
// instrumentation would hide what the compiler does to plain stores.
package seqlock
