// Package inproc is the table of the in-process drop-in locks
// (github.com/lockwatch/lockwatch/sync): every live Mutex and RWMutex that
// was ever locked, their holders, their readers and their waiters, read at
// any time without stopping the program (Take), for the probe.
//
// A lock joins the table at its first Lock (one allocation: its entry, a
// weak pointer to it and a cleanup), so nothing here keeps a dropped lock
// alive; afterwards an acquire costs one load to see that it is registered.
// Holder records live in the lock itself (State); reader and waiter records
// in fixed tables allocated with the program, claimed by a CAS on a slot
// chosen by hashing the goroutine id, each on cache lines of its own, so
// that readers of one RWMutex do not write a common line. A record that finds
// no free slot is counted instead (Snapshot.MoreWaiters, Lock.MoreReaders).
package inproc
