package arena

import (
	"errors"
	"io"
	"strings"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

// A process of a run that imports the drop-in sync (github.com/lockwatch/
// lockwatch/sync) makes its drop-in arena file in the run directory,
// dropin-PID.arena (internal/rt/inproc.ArenaFile; the name has the pid, not
// the start time), and maps it for the rest of its life. Such files are not
// per slot of the process table, so the sweep removes them by a rule of
// their own, the sweep's rule for a process's files:
//
//   - the process is proved gone: no process has the pid, or a zombie has it
//     (the file's writer had that pid; whichever process the pid names now,
//     dead, the writer is gone). A live process with the pid keeps the file,
//     even one that is not the writer (a reused pid): nothing is proved;
//   - nothing recorded in the run names a process with that pid (the
//     process table, a holder or waiter record, an event, a lock-order
//     edge), whatever its start time.
//
// A process that takes the pid in the moment between the check and the
// removal, and makes its file, must not lose it: the file is first renamed
// aside, the pid checked again, and the name linked back if the pid then
// has a process (which may have opened the file by its name before the
// rename; one that came after made a file of its own, and the link fails).

// dropinPrefix and dropinSuffix frame a drop-in arena file's name.
const (
	dropinPrefix = "dropin-"
	dropinSuffix = ".arena"
)

// DropinPID returns the pid in a drop-in arena file's name, dropin-PID.arena.
func DropinPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, dropinPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, dropinSuffix)
	if !ok {
		return 0, false
	}
	pid, ok := decimal(digits, 31)
	if !ok || pid == 0 {
		return 0, false
	}
	return int(pid), true
}

// gone reports whether no live process has pid.
func gone(pid int) bool {
	st, err := proc.ReadStat(pid)
	if errors.Is(err, proc.ErrNoProcess) {
		return true
	}
	return err == nil && (st.State == 'Z' || st.State == 'X')
}

// sweepDropinFiles removes, of names (the run directory's), the drop-in
// arena files of processes gone whose pids named (called once, if one is
// gone) does not hold; it returns how many it removed.
func sweepDropinFiles(rd *RunDir, names []string, named func() map[int]bool) int {
	removed := 0
	var isNamed map[int]bool
	for _, n := range names {
		pid, ok := DropinPID(n)
		if !ok || !gone(pid) {
			continue
		}
		if isNamed == nil {
			isNamed = named()
		}
		if isNamed[pid] {
			continue
		}
		aside := ".sweep-" + n
		if rd.Rename(n, aside) != nil {
			continue
		}
		if !gone(pid) {
			// Its pid has a process now, which may have opened the file
			// by its name: give the name back (unless it made its own).
			if rd.link(aside, n) != nil {
				_ = rd.Remove(aside)
				continue
			}
		} else {
			removed++
		}
		_ = rd.Remove(aside)
	}
	return removed
}

// namedPIDs returns the pids of the processes the arena names.
func (a *Arena) namedPIDs() map[int]bool {
	pids := map[int]bool{}
	a.eachNamed(func(pid uint32, _ uint64) bool {
		pids[int(pid)] = true
		return true
	})
	return pids
}

// SweepDropinFiles removes the drop-in arena files of the processes of the
// run in dir that are gone and that nothing recorded in the run names (see
// above): what `lockwatch run` does as processes of its run come and go, so
// that a run of many short-lived processes that only import the drop-in
// (and so never reclaim a slot of the process table, which sweeps) keeps
// files for its live processes only. A run without an arena (only drop-in
// processes joined it) names none. It returns the pids of the drop-in arena
// files it found, removed or not, and how many it removed.
func SweepDropinFiles(dir string) (pids []int, removed int, err error) {
	rd, err := openDir(dir, false, false) // a run of drop-in processes alone has no arena
	if err != nil {
		return nil, 0, err
	}
	defer rd.Close()
	names, err := rd.names()
	if err != nil {
		return nil, 0, err
	}
	someGone := false
	for _, n := range names {
		if pid, ok := DropinPID(n); ok {
			pids = append(pids, pid)
			someGone = someGone || gone(pid)
		}
	}
	if !someGone {
		return pids, 0, nil // the arena's records are not read at all
	}
	named := map[int]bool{}
	a, err := OpenArena(rd, false, false)
	switch {
	case err == nil:
		err = a.guarded(func() { named = a.namedPIDs() })
		a.Unmap()
		if err != nil {
			return pids, 0, err // a damaged arena proves nothing
		}
	case !errors.Is(err, ErrNotRun):
		return pids, 0, err
	}
	return pids, sweepDropinFiles(rd, names, func() map[int]bool { return named }), nil
}

// names lists the run directory, at most maxSweepNames entries.
func (rd *RunDir) names() ([]string, error) {
	d, err := rd.root.Open(".")
	if err != nil {
		return nil, rd.pathError(err, ".")
	}
	defer d.Close()
	var names []string
	for len(names) < maxSweepNames {
		batch, err := d.Readdirnames(1024) // names alone: no stat of each
		names = append(names, batch...)
		if err == io.EOF || len(batch) == 0 {
			break
		}
		if err != nil {
			return nil, rd.pathError(err, ".")
		}
	}
	return names, nil
}
