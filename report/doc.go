// Package report diagnoses the locks of a run, whatever their kind: from
// the snapshots its lock sources give (lockstate: who holds and who waits
// for each lock), the liveness of the processes they name and, when they
// answer, the probes' live stacks, it builds a Report: findings first
// (dead-holder, cycle, stuck-holder, stale-waiter), then the locks,
// waiters, processes, recent events and the stacks of the goroutines
// involved. A Report renders as tables (Write) or as the JSON documented in
// docs/json.md (its fields are that schema).
//
//	src := report.Sources{Locks: []lockstate.Source{mySource}, Host: report.LocalHost{}}
//	r, err := report.Diagnose(ctx, src, report.Options{})
//	if err != nil { ... }
//	r.Write(os.Stdout, report.Style{})
//	if r.Deadlock() { ... }
//
// report imports no lock backend: each adapts its locks to lockstate in a
// package of its own (etcdsrc for etcd's, and lockwatch's own for
// lockreg's arena, the drop-in mutexes, file locks), the way a
// database/sql driver does, and passes lockstate/lockstatetest. What one
// kind knows of its locks and processes (lockstate.Facts) the report shows
// by name; package reportcmd prints reports for commands.
//
// # Findings
//
// The wait-for graph has a node per goroutine (host, pid, start time,
// goroutine id) and an edge from each waiting goroutine to each goroutine
// it waits for: a writer waits for every holder of the lock (several
// readers), a reader for the writer holding it or, while readers alone
// hold it, for the writers queued (sync.RWMutex prefers writers). Findings
// come from that graph:
//
//   - dead-holder: a held lock whose holder is proven dead by the host
//     (gone, zombie, reused pid) or by its backend (the kernel's
//     FUTEX_OWNER_DIED, an expired lease).
//   - cycle: goroutines not proven dead that wait for each other: a
//     strongly connected component of the graph, reported as its shortest
//     loop through the smallest lock name.
//   - stuck-holder: a live holder, waiting for no lock, that has held the
//     lock past Options.StuckAfter while another goroutine waited as long.
//   - stale-waiter: a waiter record whose process is proven dead.
//
// A death is proven by the host (procid.Check: pid plus start time, for
// processes of this machine) or by the backend; a failed check is
// "unknown" and never reported as a death, and a process of another
// machine is unknown unless its backend says. A snapshot is read without
// locks, so a finding is reported only once confirmed: the finding (its
// Key) must appear in two snapshots, the liveness checks made between
// them, except a death the backend proved, which needs no second look. A
// source that offers a sketch (lockstate.Sketcher: the locks someone waits
// for only) is sketched for the first look; the report is built from a
// full read, always.
package report
