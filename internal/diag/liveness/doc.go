// Package liveness tells lockwatch whether the processes of a run live, and
// tells it at once when one of them dies.
//
// Pid plus start time (internal/diag/proc) names a process: a pid alone may have
// been reused; its state, read in the same line of /proc/PID/stat, tells a
// zombie (dead: its threads, and so its locks, are gone). But pid plus start
// time is no proof that the process is the run's: a member can write any
// pid and start time into the process table, and a pid reused within the
// same clock tick has the same start time. A Run proves membership: a
// member maps the run's arena shared and writable (/proc/PID/maps). With a
// Run, System reports a live process that is not the run's as reused (dead
// to the run), unless its entry says it closed its registry; and Run.Kill
// signals only proved members, through a pidfd (docs/reliability.md).
//
// gopsutil is used only where it is safe and useful: the name and command
// line of a process that wrote no info file, and listing processes. It is
// never used for identity (its CreateTime has whole-second resolution) nor
// through PidExists or NewProcess, which open pidfds that only the garbage
// collector closes.
//
//	sys := liveness.ForRun(dir) // membership in the run in dir
//	st, err := sys.Check(id)    // proc.Alive, or a proof of death, or proc.Unknown
//
//	run, err := liveness.NewRun(dir)
//	err = run.Kill(id) // only if id maps the run's arena now
//
//	w, err := liveness.NewWatcher()
//	defer w.Close()
//	w.Add(id)
//	died, err := w.Wait(100 * time.Millisecond) // returns at once when id dies
package liveness
