// Package sync is a drop-in replacement for the standard library's sync
// whose Mutex and RWMutex record who holds them, so that lockwatch can name,
// from outside a running (or stuck) program, the goroutine that holds a
// mutex, what it is doing now, who waits for it, and the cycle.
//
// Migrating a program is changing its import line, nothing else:
//
//	import "github.com/lockwatch/lockwatch/sync"
//
// lockwatch reads what the drop-in keeps from outside the program, without
// asking it (docs/dropin.md): the program runs no probe, no goroutine and
// no socket for it.
//
// # Why this path and name
//
// The package is named sync and has every identifier of the standard
// library's sync, so that the import path is the only change: Mutex and
// RWMutex are this package's own types, with sync's exact method sets
// (Lock, Unlock, TryLock; RLock, RUnlock, TryRLock, RLocker) and
// semantics; WaitGroup, Once, Map, Pool, Cond and Locker are type aliases
// of sync's (values pass freely between code importing either), and
// NewCond, OnceFunc, OnceValue and OnceValues thin wrappers (generic where
// sync's are) that the compiler inlines. Aliases, not wrappers, for the
// types: a wrapper type would break every program that hands a
// *sync.WaitGroup to a library. A file that needs both packages imports
// one under another name (gosync "sync"), as this package does.
//
// # What is recorded: two modes
//
// The owner mode is the default. A Mutex is a sync.Mutex and one word, the
// owner word: while the mutex is held for writing, its holder's goroutine
// id; 0 once it is unlocked, so an unlocked Mutex is all zeros, as sync's
// is. An RWMutex keeps its writer the same way; its readers are counted
// by sync, not named. Lock is sync's compare-and-swap and one store of the
// goroutine id; Unlock one load, one store and sync's compare-and-swap;
// RLock and RUnlock sync's one read-modify-write of the reader count (as a
// compare-and-swap, from 0 to 1 and back; any other count takes sync's
// own RLock and RUnlock): close to sync's cost (docs/benchmarks.md). `lockwatch
// attach PID` finds, in the program's memory, every goroutine blocked on a
// drop-in mutex and the mutex's address, and reads its owner word: the
// exact holder of every awaited mutex, with its live stack; a holder whose
// goroutine no longer exists is reported as having exited holding it.
// Nothing else is recorded: no acquire site, no time, no reader, no
// lock-order edge.
//
// The records mode keeps, besides, for each held mutex where Lock was
// called and, if it waited, since when, with its stack; for each waiting
// goroutine which mutex, read or write, since when and its stack; for each
// reader of an RWMutex its goroutine and site; the names given with
// SetName; and the lock-order edges. They live in a fixed arena of shared
// memory, made when the first record needs it, that lockwatch maps from
// outside. It is on under `lockwatch run` (LOCKWATCH_DIR set: the arena is
// a file of the run directory, made when the package initializes, so the
// program joins the run), in a program that links the probe, and with
// LOCKWATCH_DROPIN=records; LOCKWATCH_DROPIN=owner keeps the owner mode
// even there. The mode is chosen before main, by one predictable branch on
// a variable: from the environment when this package initializes, or, in a
// program that links the probe, when the probe does. Go initializes a
// package once its imports are, so a package that imports this one but not
// the probe may run its init first, in the owner mode: a Mutex or write
// lock it takes there is released right in either mode, and a read lock it
// takes and keeps has no reader record (it is not among the readers the
// records list).
//
// In both modes every write the drop-in makes is invisible to the race
// detector, which sees exactly sync's synchronisation; under -race every
// call goes through sync's own methods, with their race annotations.
//
// A mutex has a display name: in the records mode the one given with
// SetName, else the function and line where its holder (or a reader)
// locked it; in the owner mode the variable that holds it, when the binary
// has symbols, else its address.
//
// # Differences from sync
//
//   - Costs: see docs/benchmarks.md. A Mutex is 16 bytes (sync's 8), an
//     RWMutex 32 (sync's 24).
//   - A mutex that is locked escapes to the heap, where a sync.Mutex in a
//     local variable may stay on the stack.
//   - Lock is inlined into its callers as a call of a few instructions of
//     assembly (amd64 and arm64), where sync's inlines its compare-and-swap:
//     the goroutine id is read from g, which Go code cannot reach. Unlock,
//     RLock and RUnlock are inlined whole, as sync's are.
//   - Without the goroutine id's offset in g (a Go release the package
//     does not know), the owner mode writes no owner word: lockwatch
//     finds the waiters but names no holder.
//   - The fast paths change sync's state words themselves, as sync's
//     inlined fast paths do; the package checks sync's layout when it
//     initializes and, if a Go release changes it, takes sync's methods
//     for every call.
//   - In the records mode on Linux, the process keeps one more file
//     descriptor (the records' memfd), once a record was written.
//   - Records are written on amd64 and arm64; elsewhere the package is
//     sync itself.
//   - SetName is new (it names mutexes in the records mode). The Enabled
//     constant says whether this build records.
//
// Misuse is what it is with sync: Unlock of an unlocked Mutex and RUnlock
// of an RWMutex not locked for reading are sync's own unrecoverable fatal
// errors, since this package's types wrap sync's.
//
// # Turning it off
//
// Built with the nolockwatch tag (go build -tags nolockwatch), Mutex and
// RWMutex are type aliases of sync's, SetName does nothing, Enabled is
// false: the program is exactly what it would be importing sync, at no
// cost. So a program can import this package always and record only in the
// builds it wants.
package sync
