// Package deadcheck tells, from inside a Go program, whether Go's runtime
// would end it for a deadlock ("all goroutines are asleep - deadlock!") if
// the caller, a goroutine that waits in a system call of its own, were
// gone. The probe (package probe) asks it: its control socket would
// otherwise keep a blocked program alive for ever.
//
// The runtime ends a program when no thread of it runs or waits in a
// system call, no goroutine waits in the network poller, and no timer is
// pending (runtime.checkdead). A Look reads the same facts, without
// stopping the program:
//
//   - runtime/metrics: no goroutine running but the caller, none runnable,
//     none in a system call or in C ("/sched/goroutines/not-in-go": a
//     goroutine reading a pipe, os/signal's, a futex wait on another
//     process's lock);
//   - /proc/self/task/*/syscall: every thread but the caller's sleeps in
//     futex(2) (an idle thread of the runtime) or nanosleep(2) (the
//     runtime's monitor). A goroutine waiting in the network poller (an
//     Accept, a Read of a socket or pipe) or a pending timer (a time.Sleep,
//     a timer's or ticker's channel, a time.AfterFunc, a context's
//     deadline) keeps one thread in epoll_pwait(2), so either keeps the
//     program awake, as it does for the runtime;
//   - the metrics again, which must not have changed, and the threads
//     again.
//
// A binary that links cgo is never asleep: the runtime never ends one for a
// deadlock (its extra thread for calls from C counts as running), so
// there is nothing to give way to.
//
// Each read is a snapshot of a running program, by a caller that holds a
// processor: a Look can find a program asleep when a timer of that
// processor falls due while it reads (then no thread waits for it), or
// when a goroutine of the program ran on that processor just before the
// caller got it back (its timer then waits in that processor's heap, with
// no thread in the poller for it). A Look refuses to find a program asleep
// when a thread was scheduled while it read; its caller looks only after
// a wait in which its own thread slept once (SelfRuns: it got its
// processor back at once), confirms with more Looks at random times (Sig
// the same: no goroutine made, no garbage collection in between; Runs
// grown by a few at most), and whatever it does on the answer must undo
// itself when the program turns out awake after all (the probe serves
// again after the next garbage collection).
package deadcheck

import "sync/atomic"

// A Look is one reading of the process.
type Look struct {
	// Asleep: nothing but another goroutine of the process could wake
	// any of its goroutines, the caller's aside.
	Asleep bool
	// Why says what keeps the process awake (a thread in a system call,
	// a goroutine running...), when it is not asleep.
	Why string
	// Sig is the process's state as far as a Look sees it: two Looks
	// with the same Sig saw no goroutine made or ended and no garbage
	// collection in between.
	Sig Sig
	// Runs counts the times the threads but the caller's and the
	// monitor's were scheduled since they started. Between two Looks of
	// a deadlocked process it grows by a few (the runtime starts a thread
	// to poll the network when it takes the caller's processor away,
	// which finds nothing to do); a timer that fires makes it grow too.
	// A timer in the heap of the processor the caller holds has no
	// thread waiting for it while the caller runs: if it falls due during
	// a Look, that Look sees no thread in the network poller, and only
	// Runs tells that something ran since the last one.
	Runs uint64
}

// Sig is what two Looks of an asleep process compare.
type Sig struct {
	Goroutines uint64 // goroutines, the runtime's included
	Created    uint64 // goroutines made since the program started
	GCs        uint64 // garbage collections since the program started
	Threads    int
}

// Watch, when set, is called with every Look the probe takes (tests).
var Watch atomic.Pointer[func(Look)]

// Tell passes l, a Look the caller made without reading the process (why
// it did not look), to Watch, if set.
func Tell(l Look) {
	if w := Watch.Load(); w != nil {
		(*w)(l)
	}
}
