// Package lockreg is a registry of named locks shared by the processes of a
// run, in which every acquisition is recorded where any process of the same
// user can read it, even when every process of the run is stuck.
//
// A run is a directory (mode 0700) holding one arena: a file mapped
// MAP_SHARED by every process, under /dev/shm when the run is made with
// DefaultRoot. The arena holds a process table, the lock slots, waiter
// records and a ring of recent lock events; beside it, each process writes an
// info file and a dictionary of the stacks it acquired locks from.
//
//	reg, err := lockreg.Open(dir, lockreg.Options{Role: "worker"})
//	...
//	mu, err := reg.Mutex("queue.wlock")
//	if err := mu.Lock(ctx); err != nil { ... }
//	defer mu.Unlock()
//
// # The lock word
//
// A lock is a 32-bit futex word: 0 when free, else the holder's pid in the
// low 30 bits, plus FUTEX_WAITERS and FUTEX_OWNER_DIED. Acquire is one CAS
// from 0 to the pid, so no instant exists at which a lock is held by nobody
// known. Waiters sleep in FUTEX_WAIT (not the private variant: the word is
// shared between processes); Unlock releases the word with a CAS from the
// value naming its pid to 0, so a second Unlock of one hold gets ErrNotHeld
// and never releases a hold that another process took meanwhile, and wakes
// one waiter if the WAITERS bit was set.
//
// # Processes and Close
//
// Each process takes a slot of the run's process table at Open; the slot of
// a process proven dead is reclaimed by the next process that needs one,
// and a process that closes and reopens a run takes its own slot back.
// Close releases the arena's mappings and robust-list entries; lock calls
// waiting when it is called, and those made after, return ErrClosed.
//
// # Dead holders
//
// On Linux each process registers the kernel's robust-futex list for its main
// thread, and links every lock it uses into it, once. When a process dies, the
// kernel marks each lock word holding its pid with FUTEX_OWNER_DIED and wakes
// a waiter. Where the list is unavailable (a binary linked with glibc: cgo or
// -race) waiters check the holder's liveness (pid plus start time) while they
// wait. What a waiter then does is its Policy: Stall (the default) keeps
// waiting, so the deadlock stays visible and is reported; Recover takes the
// lock and returns ErrOwnerDead.
//
// # Records
//
// Every acquire records the holder (pid, process start time, goroutine id,
// stack id, time) in the lock's slot, and every wait a waiter record, each
// under a sequence counter so that a reader never sees a torn record.
// Acquires, releases, waits, timeouts, deaths and recoveries go to the event
// ring. With the record (the default) an uncontended Lock+Unlock costs about
// 50 ns, 3.4 times a sync.Mutex; with Options.NoRecord 1.3 times. See
// docs/benchmarks.md.
//
// # Fencing tokens
//
// Every acquire gives the hold a fencing token (Mutex.Token): one more than
// the lock's last, in whichever process took it, including a Recover
// waiter's take-over of a dead holder's lock. A resource the lock protects
// takes the token with each write and refuses tokens older than one it has
// admitted, and, with Fence.Mutex set, tokens whose hold has ended
// (Mutex.IsCurrent): a write that arrives late (from a holder that died with
// the write in flight, or that wrote after its Unlock) is refused rather
// than applied over a later holder's. Tokens of a lock are never issued
// twice, even by a later run made at the same path (they start at the
// wall-clock time at which the lock was named). The cost is one increment
// in the acquire's critical section; see docs/benchmarks.md.
//
// # Reading a run
//
// lockwatch maps a run read-only and copies it into typed values without
// taking any lock; it never blocks behind a stuck process. Stacks are read
// from the per-process dictionaries, also for a holder that died. The
// arena's format is described in docs/registry-format.md; this package is
// the lock and its writer, and exports no reader.
//
// # Stuck acquires
//
// Options.OnStuck is called from an acquire that has waited StuckAfter, then
// again with backoff while the wait goes on; the wait continues when it
// returns. The probe package installs a hook that writes goroutine dumps.
//
// lockreg is Linux-only: it needs futexes, and /proc to check liveness.
// All processes of a run must share one pid namespace.
package lockreg
