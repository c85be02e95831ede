// Package filelocksrc presents the kernel's file locks to the diagnosis:
// flock(2) locks, POSIX record locks (fcntl F_SETLK) and open file
// description locks (fcntl F_OFD_SETLK), of processes in any language. It
// reads /proc/locks for the locks and the requests blocked on them (the
// "->" lines), /proc/PID/fdinfo (its "lock:" lines) for which processes
// hold each flock or OFD lock through which descriptor, and /proc/PID/fd
// for the file's path, and turns them into a lockstate.Snapshot of locks of
// kinds "flock", "posix" and "ofd".
//
//	src := filelocksrc.New(pid) // the knot of file locks pid takes part in
//	r, err := report.Diagnose(ctx, report.Sources{Locks: []lockstate.Source{src}, Host: liveness.System{}, Stacks: filelocksrc.Threads{}}, report.Options{})
//
// # Parties
//
// A file lock belongs to a process (POSIX) or to an open file description
// (flock, OFD), never to a thread, so each party is a process as a whole:
// Goroutine is lockstate.WholeProcess. A flock or OFD lock is held by every
// process with a descriptor on its open file description (a child that
// inherited it across fork and exec as much as its parent); /proc/locks
// names only the process that took a flock lock, and no process for an OFD
// lock (pid -1), so the holders come from the fdinfo "lock:" lines, which
// the kernel prints for the descriptors of the lock's own open file: those
// of one descriptor proved so, and kcmp(2) for every other descriptor of
// the machine, whether it is the same open file (share.go). The
// kernel names no process for a blocked OFD request either: a thread
// blocked in fcntl(F_OFD_SETLKW) on a descriptor of the same file is named
// as its waiter only when the match is exact, and the lock's facts say it
// was inferred.
//
// # Times
//
// The kernel keeps no times for file locks. A Source remembers its previous
// read: a holder's Since is when the Source first saw it hold the lock
// without a break, and a break is ruled out only by a request right under
// the lock whose blocked thread did not run in between (the kernel wakes
// those requests when the lock is released). A first read says 0.
//
// # Consistency
//
// The kernel prints /proc/locks a page at a time, each page under its
// lock: a held lock and the requests under it are always printed together,
// but two locks may be printed moments apart. A holder or waiter that
// exited before its process was read is left out, with a note. The report
// confirms every finding with a second read.
package filelocksrc
