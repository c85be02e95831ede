// Package report diagnoses a lockwatch run: from a lockreg snapshot, the
// liveness of its processes and, when they answer, the probes' live stacks,
// it builds a Report: findings first (dead-holder, cycle, stuck-holder,
// stale-waiter), then the locks, waiters, processes, recent events and the
// stacks of the goroutines involved. A Report renders as tables (Write) or as
// the JSON documented in docs/json.md (its fields are that schema).
//
//	r, err := report.Diagnose(ctx, dir, report.Sources{Host: liveness.System{}}, report.Options{})
//	if err != nil { ... }
//	r.Write(os.Stdout, report.Style{})
//	if r.Deadlock() { ... }
//
// # Findings
//
// The wait-for graph has a node per goroutine (pid, start time, goroutine
// id). A waiter record is an edge from its goroutine to the lock it waits
// for, and the lock's holder record an edge from the lock to the holder's
// goroutine. Each goroutine waits for at most one lock, so following edges
// from any waiter ends at a holder that waits for nothing, or at a dead
// holder, or goes round a loop:
//
//   - dead-holder: a held lock whose holder is proven dead (gone, zombie,
//     reused pid) or whose word carries FUTEX_OWNER_DIED.
//   - cycle: a loop of live goroutines.
//   - stuck-holder: a live holder, waiting for no registry lock, that has held
//     the lock past Options.StuckAfter while another goroutine waited as long.
//   - stale-waiter: a waiter record whose process is proven dead.
//
// A death is proven by internal/proc (pid plus start time); a failed check is
// "unknown" and never reported as a death. A snapshot is read without locks,
// so a finding is reported only once confirmed: the finding must appear in
// two snapshots with identical records, the liveness checks made between
// them, except a FUTEX_OWNER_DIED, which the kernel wrote.
package report
