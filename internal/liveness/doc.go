// Package liveness tells lockwatch whether the processes of a run live, and
// tells it at once when one of them dies.
//
// Identity is pid plus start time (internal/proc): a pid alone may have been
// reused; its state, read in the same line of /proc/PID/stat, tells a
// zombie (dead: its threads, and so its locks, are gone). gopsutil is used
// only where it is safe and useful: the name and command line of a process
// that wrote no info file, and listing processes. It is never used for identity (its CreateTime has whole-second
// resolution) nor through PidExists or NewProcess, which open pidfds that only
// the garbage collector closes.
//
//	sys := liveness.System{}
//	st, err := sys.Check(id) // proc.Alive, or a proof of death, or proc.Unknown
//
//	w, err := liveness.NewWatcher()
//	defer w.Close()
//	w.Add(id)
//	died, err := w.Wait(100 * time.Millisecond) // returns at once when id dies
package liveness
