// Package probe is the in-process agent of lockwatch. Importing it is all a
// program needs to be watched:
//
//	import _ "github.com/lockwatch/lockwatch/probe"
//
// A program that uses only the drop-in sync (github.com/lockwatch/lockwatch/sync
// in place of sync) needs no probe: `lockwatch attach PID` and `lockwatch
// run` read its drop-in mutexes from outside (docs/dropin.md). The probe
// adds the run's cross-process locks (Agent.Registry), the stuck hook and
// its dumps, and live stacks through its control socket.
//
// In a program started with LOCKWATCH_DIR in its environment (as `lockwatch
// run` starts it), the probe starts by itself when the package initializes,
// and joins that run; if it cannot, it says so in one line on stderr and the
// program goes on without it. A program may also start it, to use the run's
// locks:
//
//	agent, err := probe.Start(probe.Options{Role: "worker"})
//	if err != nil { ... }
//	defer agent.Close()
//	mu, err := agent.Registry().Mutex("queue.wlock")
//
// Without LOCKWATCH_DIR, Start makes a fresh run directory under
// the default root (/dev/shm/lockwatch-UID, or a private fallback; $LOCKWATCH_ROOT
// names another), so that a program started without lockwatch can
// still be attached to. Close removes that directory when the run ended
// cleanly (every process of it closed its probe, no lock held): it lives in
// memory, and holds nothing to diagnose. Any other run is kept.
//
// When the probe started by itself, a later Start returns the running
// agent and ignores its options, except Role, which an agent without a role
// takes on; LOCKWATCH_ROLE in the environment names it from the start.
//
// # What the agent does
//
//   - It joins the run's registry (lockreg.Open) with this process's role.
//     Close marks the process as exited cleanly.
//   - It serves a control socket in the run directory, <base>.sock where
//     base names the process by pid and start time (Agent.SocketPath),
//     from a loop that waits for it in ppoll(2) (see Go's own deadlock
//     detection below):
//     process info, goroutine dumps, this process's locks and waiters, and
//     its drop-in mutexes (github.com/lockwatch/lockwatch/sync) that are
//     held or awaited. lockwatch asks it.
//   - Its stuck hook (lockreg.Options.OnStuck) runs when an acquire has
//     waited too long: it writes one line on stderr, naming the lock, the
//     holder's pid and goroutine, whether the holder is alive, how long the
//     acquire has waited and where the dump is; and a dump pair, the text
//     traceback (<base>.stuck-<time>.txt) and the goroutine profile
//     (<base>.stuck-<time>.pb.gz). The text dump stops the world (some
//     100 ms at 10,000 goroutines), so the process writes at most one pair
//     every 5 seconds, whichever goroutines wait, and 16 in all (a text
//     dump of 10,000 goroutines takes some 7 MiB); the line, always, names
//     the latest.
//   - It looks at the drop-in mutexes' waiters every min(StuckAfter/4, 1 s),
//     give or take a quarter of that,
//     and reports each wait older than StuckAfter once, the same way: a
//     line (the waiter, the mutex, its holder or readers and where the
//     holder locked it, and the RWMutex read-recursion trap by name) and a
//     dump pair under the same limits. It never ends the process.
//   - It keeps the lock-order edges of the drop-in mutexes
//     (docs/lock-order.md) in <base>.orders.json, written within 1.1 s
//     of a new edge and at Close, so that lockwatch reads them after the
//     process exited.
//   - With Options.Signal, on SIGUSR1 it writes a goroutine profile,
//     <base>.usr1-<time>.pb.gz, and a line on stderr. The program goes on:
//     the profile stops the world only for moments. It is off by default,
//     and off when the probe starts by itself: a program that asks for a
//     signal keeps a thread waiting for signals for the rest of its life,
//     and Go's runtime then never ends it for a deadlock.
//
// # Go's own deadlock detection
//
// Go's runtime ends a program whose goroutines are all blocked ("all
// goroutines are asleep - deadlock!", exit status 2) only when nothing could
// wake one: no timer pending, no goroutine waiting in the network poller, no
// thread in a system call. The probe keeps it so. Its socket is not waited
// for in the network poller, and it has no timer: one goroutine, its loop,
// waits in ppoll(2) on a thread of its own for a connection or for the next
// look. In a probe started outside lockwatch run (no LOCKWATCH_DIR), the
// loop looks whether anything but another goroutine could wake one of the
// program's goroutines, as the runtime would judge without the probe
// (internal/rt/deadcheck: runtime/metrics say no goroutine runs, is
// runnable or is in a system call; /proc/self/task says every thread but
// the loop's and the runtime's monitor sleeps in futex(2) or nanosleep(2),
// so none waits in the network poller for I/O or a pending timer, and none
// was scheduled while the look read). It looks at an awake program every
// quarter second to every second, at random times, so that no periodic
// sleeper of the program keeps in step with it; a look counts only right
// after a wait of 50 ms in which the loop's thread slept once (no goroutine
// of the program ran on its processor meanwhile). When three looks in a row,
// over a second at least, find the program so, and the same (no goroutine
// made, no collection, its threads scheduled a few times at most in
// between), the probe stands down: it closes its socket and ends its
// goroutines (keeping its registry), and says nothing. The runtime then
// judges the program as it would without lockwatch: a deadlocked one it
// ends at once with its own message, status and stacks, which makes the
// program end some 1.5 to 5 s after it blocked (on a 2-core machine loaded
// by two CPU hogs; 3 to 21 s with 200 threads, once more than a minute:
// docs/benchmarks.md). A
// program whose /proc/self/task files the probe cannot read (not dumpable,
// run as another user than root; a kernel without schedstat files) is not
// looked at: the probe says so once on stderr, and only lockwatch run then
// keeps Go's deadlock detection. A goroutine asleep
// (time.Sleep), waiting on a timer's channel, a pending time.AfterFunc or a
// context's deadline, an Accept or a Read of a socket or pipe, a signal
// (os/signal) or a blocking system call keeps the program awake, for the
// runtime and the probe alike.
//
// A look is a snapshot: it could take a live program for a blocked one (none
// did in the measurements of docs/benchmarks.md). Such a stand-down is
// harmless: the program goes on, and the probe serves again after its next
// garbage collection (it forces one as it stands down and waits for the
// one after: the runtime forces one every 2 minutes in a program that
// runs at all, sooner in one that allocates). Meanwhile the probe keeps a
// mark in its run directory (<base>.down), and `lockwatch attach PID`
// reads the program from its memory and says so in a note; the look at
// the drop-in mutexes' waiters and the lock-order file wait for the probe
// to serve again (lockreg's stuck hook does not). With garbage
// collection off (GOGC=off, or debug.SetGCPercent(-1)) no collection would
// come, so the probe does not stand down by itself: a deadlocked program
// then stays, as one with any socket open does, and lockwatch run (or
// attach) is what diagnoses it.
//
// Under lockwatch run, run reads its processes' goroutines from their
// memory and, when it finds one so, prints lockwatch's report and asks its
// probe to stand down (op stand-down); the probe does not look by itself.
// If a timer wakes the program after its probe stood down (run cannot see
// a time.AfterFunc), the probe serves again after the next garbage
// collection, as above.
//
// The runtime never ends a program that links cgo (a -race build is one) for
// a deadlock, with sync either, so there the probe never stands down; nor
// does one whose goroutine waits for signals (Options.Signal, os/signal).
// Under go test, the -timeout alarm is a pending timer: the runtime ends a
// deadlocked test only with -timeout 0, with or without the probe.
//
// # Protocol
//
// The control socket is a unix stream socket, mode 0600, in the run
// directory (itself 0700); the probe also checks the peer's uid with
// SO_PEERCRED and answers only its own user. Each connection carries one
// request and one answer. Every frame is a 4-byte big-endian length and
// that many bytes.
//
// The request is one frame of JSON, at most 4 KiB:
//
//	{"v":1,"op":"info"}
//	{"v":1,"op":"goroutines"}            the goroutine profile (pprof protobuf, debug=0, with labels)
//	{"v":1,"op":"goroutines","text":true} the text traceback, with goroutine ids (stops the world)
//	{"v":1,"op":"goroutines","trace":true} a short execution trace: goroutine ids, states, stacks
//	{"v":1,"op":"locks"}
//	{"v":1,"op":"mutexes"}               the drop-in mutexes held or awaited (at most 10,000)
//	{"v":1,"op":"orders"}                the drop-in mutexes' lock-order edges (at most 4,096)
//	{"v":1,"op":"mutexes","orders":true} both in one answer (the edges left out if both pass 4 MiB)
//	{"v":1,"op":"stand-down"}           answered {"ok":true}, then the probe stands down
//
// The answer is one frame of JSON, at most 16 MiB:
//
//	{"v":1,"ok":true,"info":{...}}        Info (the views: internal/rt/probewire)
//	{"v":1,"ok":true,"locks":{...}}       LockView
//	{"v":1,"ok":true,"mutexes":{...}}     MutexView
//	{"v":1,"ok":true,"orders":{...}}      OrderView
//	{"v":1,"ok":true,"mutexes":{...},"orders":{...}}  both
//	{"v":1,"ok":true,"dump":{...}}        Dump, without its bytes
//	{"v":1,"ok":false,"error":"..."}      the request was refused or failed
//
// and, after a dump, a second frame of at most 256 MiB with the dump's raw
// bytes. The default dump is the goroutine profile, which pauses the
// process for milliseconds at 10,000 goroutines where the text dump stops it
// for the whole dump; lockreg labels each goroutine waiting for a lock with
// the pprof label "lockwatch.wait"=<lock name>, so the profile shows who
// waits for what. The trace (runtime/trace, started and stopped at once)
// has what the profile lacks, each goroutine by id with its state, and
// stops the world only to start and end; it fails while the program traces
// itself. Each dump's Stopped says the longest stop of the world its
// capture saw (runtime/metrics).
//
// A client has 1 second from connecting to send its request and 10 seconds
// to read the answer; the probe serves 8 connections at once and answers
// more with an error. A malformed request (bad length, JSON, version or op)
// gets an error answer; a client that stalls is dropped at its deadline.
// Dumps are taken one at a time.
package probe
