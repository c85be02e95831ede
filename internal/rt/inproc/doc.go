// Package inproc holds the records of the in-process drop-in locks
// (github.com/lockwatch/lockwatch/sync): the holder of every lock held for
// writing, the readers of every RWMutex held for reading, every goroutine
// that waits, the names given with SetName, and the lock-order edges; read
// at any time without stopping the program (Take), in process for the
// probe or from another process (Remote).
//
// The records live in one arena of fixed size holding no Go pointer (shared
// memory on Linux), in slots claimed at a place chosen by hashing the
// goroutine id or the lock's address, each on cache lines of its own, so that
// readers of one RWMutex do not write a common line; a record that finds no
// free slot is counted instead (Snapshot.MoreWaiters, Lock.MoreReaders).
// Nothing registers a lock: a lock keeps only the index of its holder record
// while it is held for writing. Every record is written and read under the
// seqlock protocol of internal/rt/seqlock, unseen by the race detector.
// docs/dropin.md describes the design.
package inproc
