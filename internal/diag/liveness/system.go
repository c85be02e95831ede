package liveness

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/shirou/gopsutil/v3/process"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	lwreport "github.com/lockwatch/lockwatch/report" // its tests declare a report of their own
)

// System answers from /proc and gopsutil. Its zero value is ready to use and
// it is safe for concurrent use.
type System struct {
	// Run, when not nil, is the run whose processes are checked: a process
	// is then alive only while it is provably the run's, not merely while
	// some process has its pid and start time (which is no identity: a pid
	// reused within the same clock tick has the same start time). See
	// CheckAll. Nil checks pid, start time and zombie state only.
	Run *Run
}

// ForRun returns a System that proves membership in the run in dir, or a
// plain System when dir holds no arena yet.
func ForRun(dir string) System {
	r, err := NewRun(dir)
	if err != nil {
		return System{}
	}
	return System{Run: r}
}

// Check proves whether id's process is alive; see CheckAll.
func (s System) Check(id proc.Identity) (proc.Status, error) {
	st, errs := s.checkAll([]proc.Identity{id})
	return st[id], errs[id]
}

// CheckAll proves whether each process is alive: proc.Check for pid, start
// time and zombie state. A failed read is proc.Unknown, never a death.
//
// With a Run, a process alive by pid and start time must also be the run's:
// it maps the run's arena shared and writable (Run.Maps). One that does not
// is reported Reused (it is not the process the run recorded: a pid reused
// in the same clock tick, or a forged entry) unless the process table says
// it closed its registry, which is no proof of death: a process that closed
// its registry may still run. The process table is read after every mapping
// was looked at, so that a process that closes its registry meanwhile is
// seen closed. A process that exec'd another program lost its mappings
// without closing: it is reported Reused, as the kernel itself treats it (at
// exec it walks the robust list and marks the locks the old program held).
func (s System) CheckAll(ids []proc.Identity) map[proc.Identity]proc.Status {
	st, _ := s.checkAll(ids)
	return st
}

func (s System) checkAll(ids []proc.Identity) (map[proc.Identity]proc.Status, map[proc.Identity]error) {
	out := make(map[proc.Identity]proc.Status, len(ids))
	errs := make(map[proc.Identity]error)
	var suspects []proc.Identity
	for _, id := range ids {
		st, err := check(id)
		if st == proc.Alive && err == nil && s.Run != nil {
			var maps bool
			st, maps, err = s.Run.member(id)
			if st == proc.Alive && err == nil && !maps {
				suspects = append(suspects, id)
			}
		}
		if err != nil {
			st = proc.Unknown
			errs[id] = err
		}
		out[id] = st
	}
	if len(suspects) == 0 {
		return out, errs
	}
	procs, err := arena.ReadProcesses(s.Run.dir)
	closed := make(map[proc.Identity]bool)
	for _, p := range procs {
		if p.State == arena.ProcExited {
			closed[p.Identity()] = true
		}
	}
	for _, id := range suspects {
		switch {
		case err != nil:
			out[id], errs[id] = proc.Unknown, fmt.Errorf("liveness: pid %d does not map the run's arena, and the process table cannot be read to tell whether it closed its registry: %w", id.PID, err)
		case closed[id]:
			out[id] = proc.Alive // closed its registry; still runs
		default:
			out[id] = proc.Reused
		}
	}
	return out, errs
}

// check is the answer without a run: proc.Check reads the state and start
// time from /proc/PID/stat in one read, so a zombie (state Z or X) and a
// reused pid are told apart from a live process at once.
func check(id proc.Identity) (proc.Status, error) { return proc.Check(id) }

// Command returns a short description of a process that wrote no info file:
// its command line, or its name; "" if neither can be read
// (report.LocalHost's).
func (System) Command(pid int) string { return lwreport.LocalHost{}.Command(pid) }

// Owner returns the uid that owns pid's /proc entry: the process's user.
func Owner(pid int) (uid int, err error) {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return -1, err
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid), nil
}

// Probed lists this user's processes whose environment names a run
// directory (LOCKWATCH_DIR), with that directory.
func Probed(envName string) (map[int]string, error) {
	pids, err := process.PidsWithContext(context.Background())
	if err != nil {
		return nil, err
	}
	uid := os.Getuid()
	out := make(map[int]string)
	for _, pid := range pids {
		if u, err := Owner(int(pid)); err != nil || u != uid {
			continue
		}
		if dir, ok, err := Environ(int(pid), envName); err == nil && ok {
			out[int(pid)] = dir
		}
	}
	return out, nil
}

// Environ returns the value of name in pid's initial environment
// (/proc/PID/environ), and whether it is set. The error keeps its
// *fs.PathError shape (fs.ErrNotExist: no such process; fs.ErrPermission:
// another user's).
func Environ(pid int, name string) (string, bool, error) {
	p := &process.Process{Pid: int32(pid)}
	env, err := p.EnvironWithContext(context.Background())
	if err != nil {
		return "", false, err
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true, nil
		}
	}
	return "", false, nil
}
