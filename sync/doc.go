// Package sync is a drop-in replacement for the standard library's sync
// whose Mutex and RWMutex record who holds them, so that lockwatch can name,
// from outside a running (or stuck) program, the goroutine that holds a
// mutex, what it is doing now, who waits for it, and the cycle.
//
// Migrating a program is changing its import line, nothing else:
//
//	import "github.com/lockwatch/lockwatch/sync"
//
// Then, while the program runs (it must run a probe: probe.Start from
// github.com/lockwatch/lockwatch/probe, or start under lockwatch run):
//
//	lockwatch attach PID
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
// On every acquire, in the mutex itself: the holder's goroutine id (read
// from the runtime's g at an offset found and verified against
// runtime.Stack at start-up; never a pointer to g, which the runtime reuses
// for the next goroutine), the caller's PC and its caller's (read through
// the frame pointer: Lock is not inlined; the second names the site when
// the first is in a Cond's Wait) and since when, from a coarse clock (see
// internal/record: at most 1 ms plus the ticker's scheduling delay early).
// A Lock that has to wait first records a waiter (goroutine, full stack,
// since, which mutex, read or write) in a table of fixed size; once it
// holds the lock, that record stays as the holder's full stack until
// Unlock. Each reader of an RWMutex is recorded (goroutine, site, since) in
// a table of slots chosen by hashing the lock and goroutine ids, each slot
// on its own cache line, so readers write no common line beyond sync's own
// reader count; readers beyond the table's room are counted. A mutex joins
// the process's table of locks at its first Lock, by a weak pointer, so a
// mutex the program drops is collected as before.
//
// A mutex has a display name: the one given with SetName, else the function
// and line where it was first locked.
//
// # Differences from sync
//
//   - Costs: an uncontended Lock+Unlock or RLock+RUnlock costs about two to
//     three times sync's (docs/benchmarks.md), the first Lock of each mutex
//     allocates (its table entry, a weak pointer and a cleanup), and a Mutex
//     is 80 bytes (sync's 8), an RWMutex 96 (sync's 24).
//   - A mutex that is locked escapes to the heap (the table keeps a weak
//     pointer to it), where a sync.Mutex in a local variable may stay on the
//     stack. It must live in Go memory (heap or a global), as nearly all do:
//     not in memory mapped or allocated by C.
//   - Lock, TryLock, RLock, TryRLock and RUnlock are never inlined (their
//     caller's PC is read through the frame pointer).
//   - A goroutine that waits holds one of 2048 waiter records; a reader one
//     of 4096 reader slots. Beyond that, waiters and readers are counted, not
//     listed. A read lock released by another goroutine than the one that
//     took it is accounted to the lock, not to that goroutine.
//   - Waiters are recorded at the slow path's entry: a goroutine that blocks
//     inside sync's own Lock after our TryLock failed is listed, with its
//     stack, from that moment.
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
