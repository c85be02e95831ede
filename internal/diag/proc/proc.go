// Package proc identifies Linux processes by pid plus start time and tells
// whether such a process is still alive. Pid plus start time names a
// process, but proves nothing about it: two processes started in the same
// clock tick can have the same pid one after the other, and whoever writes
// a record can write any pair. Membership of a run is proved by
// internal/diag/liveness.
//
// A pid alone is not an identity: pid_max is often 32768 and pids are reused
// within seconds. The start time used here is field 22 of /proc/PID/stat, in
// clock ticks since boot (10 ms resolution), which is what the kernel itself
// keeps; gopsutil's CreateTime rounds it through the boot time to whole
// seconds, which is too coarse to tell a reused pid from its predecessor.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/lockwatch/lockwatch/procid"
)

// Identity names one process for its whole life; see procid.ID.
type Identity = procid.ID

// Stat is what /proc/PID/stat says of a process at one instant.
type Stat struct {
	PID   int
	State byte // R, S, D, Z, T, t, X, I, ...
	PPID  int
	PGID  int
	Start uint64
	Comm  string
	// CPU is the CPU time it has used, user and system (fields 14 and
	// 15), in clock ticks.
	CPU uint64
}

// Identity returns the identity of the process the Stat describes.
func (s Stat) Identity() Identity { return Identity{PID: s.PID, Start: s.Start} }

// ErrNoProcess means no process with the pid exists now.
var ErrNoProcess = errors.New("no such process")

// ReadStat reads /proc/PID/stat. It returns an error wrapping ErrNoProcess when
// the pid does not exist, and other errors (permission, fd exhaustion) as they
// come: those say nothing about whether the process lives.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("proc: pid %d: %w", pid, ErrNoProcess)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return Stat{}, fmt.Errorf("proc: pid %d: %w", pid, ErrNoProcess)
		}
		return Stat{}, err
	}
	return ParseStat(pid, b)
}

// ParseStat parses the contents of /proc/PID/stat. The command name may hold
// spaces and parentheses, so fields are counted from the last ')'.
func ParseStat(pid int, b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("proc: pid %d: unreadable stat %q", pid, trim(b))
	}
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("proc: pid %d: unreadable stat %q", pid, trim(b))
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgid, err2 := strconv.Atoi(string(f[2]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	utime, err4 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err5 := strconv.ParseUint(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return Stat{}, fmt.Errorf("proc: pid %d: unreadable stat %q: %w", pid, trim(b), err)
	}
	return Stat{PID: pid, State: f[0][0], PPID: ppid, PGID: pgid, Start: start, Comm: string(b[open+1 : end]), CPU: utime + stime}, nil
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// Self returns the identity of the calling process (procid.Self).
func Self() Identity { return procid.Self() }

// Status is what can be said of an Identity's process now; see
// procid.Status.
type Status = procid.Status

// The statuses, as procid names them.
const (
	Unknown = procid.Unknown
	Alive   = procid.Alive
	Zombie  = procid.Zombie
	Gone    = procid.Gone
	Reused  = procid.Reused
)

// Check tells whether the process named by id is alive: procid.Check.
func Check(id Identity) (Status, error) { return procid.Check(id) }
