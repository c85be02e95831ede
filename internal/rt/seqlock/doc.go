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
// A 32-bit sequence wraps after 2^31 writes; a reader would have to sleep
// through exactly that many, between two loads a few nanoseconds apart.
//
// A writer that dies mid-write (a process killed) leaves the sequence odd.
// Readers never wait for it: each read is bounded (Read's tries; lockreg's
// snapshot also shares a retry budget among all its records) and a record
// that stays odd is reported as torn. The next writer starts from the next
// even value (Begin), so the record heals on its next write.
//
// # How the four orders are obtained
//
// Readers load the sequence with sync/atomic, and Valid orders the field
// loads before its load. On amd64 built by gc the writer's stores are plain
// moves (StorePlain is true): amd64's memory model (TSO) shows one core's
// stores to every other core in program order, and the gc compiler keeps
// stores to memory in program order (they are threaded through its memory
// chain, and sync/atomic operations are barriers to it). That is a property
// of this compiler on this architecture, not a promise of the Go memory model
// (by the model a plain store racing with an atomic load is a data race), so
// it is built for amd64 && gc only; everything else uses sync/atomic stores,
// sequentially consistent, with a store fence after the odd store for
// writers whose field stores are plain (arm64: DMB ISHST) and a load fence
// before Valid's load (DMB ISHLD).
//
// The odd store must survive the compiler: a plain store to the sequence
// followed by the plain even store to the same word is a dead store, which
// gc removes, and then readers accept torn copies (a first version of
// lockreg did exactly that; its TestSeqlockNeverTorn found 3,158 torn copies
// in 3 million reads). So Begin follows its plain store with an atomic load of
// the same word: the load reads the store, so the compiler keeps it, at the
// cost of an L1 hit instead of the full barrier (XCHG) of an atomic store.
//
// The stores here are invisible to the race detector (plain stores in
// functions it does not instrument, or sync/atomic on memory it does not
// track): the drop-in's records must add no happens-before edge to the
// program (docs/dropin.md), and the tests that check each record's copies are
// never torn run race-free children.
package seqlock
