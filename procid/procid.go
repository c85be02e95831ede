// Package procid names the processes that take part in a run, and says what
// is known of them: whether each is alive, or the proof that it is not; and
// the goroutine that calls it (Goroutine), the rest of a holder's name.
//
// A pid alone is not an identity: pid_max is often 32768 and pids are reused
// within seconds. An ID adds the process's start time (field 22 of
// /proc/PID/stat, in clock ticks since boot) and, for locks shared across
// machines, the host. The types are plain values, comparable and usable as
// map keys; a program outside lockwatch can build them to compare with what
// lockreg and the probe report.
package procid

import (
	"fmt"
	"strconv"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// An ID names one process for its whole life: no two processes share all
// three fields. The zero ID names no process.
type ID struct {
	// Host names the machine, for locks held across machines; "" is this
	// machine (every process of a shared-memory run).
	Host  string `json:"host,omitempty"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // clock ticks after boot, /proc/PID/stat field 22
}

// IsZero reports whether id names no process.
func (id ID) IsZero() bool { return id.PID == 0 }

// String formats id as pid@start, or host/pid@start.
func (id ID) String() string {
	if id.Host != "" {
		return fmt.Sprintf("%s/%d@%d", id.Host, id.PID, id.Start)
	}
	return fmt.Sprintf("%d@%d", id.PID, id.Start)
}

// Status is what can be said of an ID's process now. Every status but
// Unknown and Alive is a proof of death.
type Status int

const (
	// Unknown: the check itself failed (say, too many open files); nothing
	// may be concluded.
	Unknown Status = iota
	// Alive: the process runs (or sleeps, or is stopped).
	Alive
	// Zombie: the process has exited and waits to be reaped; its threads are
	// gone, and so are the locks it held.
	Zombie
	// Gone: no process has the pid.
	Gone
	// Reused: a process has the pid, but it is another one (another start
	// time, or it is not a member of the run): the process named by the ID
	// is gone.
	Reused
	// Expired: the process's lease in a distributed store ran out, so the
	// store no longer counts it as alive, whatever its host says.
	Expired
)

var statusNames = [...]string{"unknown", "alive", "zombie", "dead", "reused", "expired"}

// String returns the status as reports print it: unknown, alive, zombie,
// dead, reused or expired.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Dead reports whether the status proves the process has ended.
func (s Status) Dead() bool { return s == Zombie || s == Gone || s == Reused || s == Expired }

// Goroutine returns the calling goroutine's id, the number runtime.Stack
// prints after "goroutine ". A holder is named by its process's ID and its
// goroutine's id. It is read from the runtime's goroutine structure, at an
// offset found and checked against runtime.Stack at first use (then one
// load); where no such offset is found, from github.com/petermattis/goid if
// it agrees with runtime.Stack, else parsed from runtime.Stack: never wrong.
func Goroutine() int64 { return record.Goid() }
