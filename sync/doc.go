// Package sync is a drop-in replacement for the standard library's sync
// whose Mutex and RWMutex record who holds them, so that lockwatch can name,
// from outside a running (or stuck) program, the goroutine that holds a
// mutex, what it is doing now, who waits for it, and the cycle.
//
// Migrating a program is changing its import line, nothing else:
//
//	import "github.com/lockwatch/lockwatch/sync"
//
// The records live in shared memory that lockwatch reads from outside the
// program, without asking it (docs/dropin.md): the program runs no probe,
// no goroutine and no socket for them.
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
// # What is recorded
//
// Not in the mutex: a Mutex is a sync.Mutex and one word, which holds the
// index of its holder record while it is held for writing and is zero
// again once it is unlocked, so an unlocked Mutex is all zeros, as sync's
// is. The records live in a fixed arena per process: for each held mutex,
// the holder's goroutine id, the caller's PC and its caller's, and, if it
// had to wait, since when and its full stack; for each waiting goroutine,
// which mutex, read or write, since when and its stack; for each reader of
// an RWMutex, its goroutine and site. Nothing registers a mutex. Every
// write to the records is invisible to the race detector, which sees
// exactly sync's synchronisation.
//
// A mutex has a display name: the one given with SetName, else the
// function and line where its holder (or a reader) locked it.
//
// # Differences from sync
//
//   - Costs: see docs/benchmarks.md. A Mutex is 16 bytes (sync's 8), an
//     RWMutex 32 (sync's 24). An acquire that does not wait records no
//     time.
//   - A mutex that is locked escapes to the heap, where a sync.Mutex in a
//     local variable may stay on the stack.
//   - Lock, TryLock, RLock, TryRLock and RUnlock are never inlined (their
//     caller's PC is read through the frame pointer).
//   - The process keeps one more file descriptor, the records' memfd (on
//     Linux).
//   - Records are written on amd64 and arm64; elsewhere the package is
//     sync itself.
//   - SetName is new. The Enabled constant says whether this build records.
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
