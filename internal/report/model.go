package report

import (
	"encoding/json"
	"time"

	"github.com/lockwatch/lockwatch/stackdump"
)

// These types are the JSON report, documented field by field in
// docs/json.md. They are built for readers, not copied from lockreg.

// Schema names the report's JSON format; it changes when a field changes
// meaning or goes away (added fields do not change it).
const Schema = "lockwatch.report/v1"

// A Report is the diagnosis of one run at one moment. It is a plain value.
type Report struct {
	Schema    string      `json:"schema"`
	Run       string      `json:"run"`   // the run directory
	Taken     time.Time   `json:"taken"` // when the (confirming) snapshot was read
	Findings  []Finding   `json:"findings"`
	Locks     []LockRow   `json:"locks"`
	Waiters   []WaiterRow `json:"waiters"`
	Processes []ProcRow   `json:"processes"`
	Events    []EventRow  `json:"events"`
	Stacks    []StackRow  `json:"stacks"`
	// Notes say what the report could not see: a probe that did not answer,
	// records left out because they stayed mid-write.
	Notes []string `json:"notes"`
}

// Kind is a finding's kind. Kinds sort by severity, most severe first.
type Kind string

const (
	DeadHolder  Kind = "dead-holder"
	Cycle       Kind = "cycle"
	StuckHolder Kind = "stuck-holder"
	StaleWaiter Kind = "stale-waiter"
)

func (k Kind) rank() int {
	switch k {
	case DeadHolder:
		return 0
	case Cycle:
		return 1
	case StuckHolder:
		return 2
	}
	return 3
}

// Deadlock reports whether findings of kind k mean the run is stuck: every
// kind but stale-waiter.
func (k Kind) Deadlock() bool { return k != StaleWaiter }

// A Finding is one thing wrong with the run.
type Finding struct {
	Kind Kind   `json:"kind"`
	Lock string `json:"lock,omitempty"` // the lock at fault; for a cycle, the first lock of the loop
	// Holder holds Lock (nil for stale-waiter).
	Holder *Party `json:"holder,omitempty"`
	// Waiters wait for Lock; for a stale-waiter, the dead waiter.
	Waiters []Party `json:"waiters"`
	// Cycle is the loop, for a cycle: each step's goroutine waits for
	// WaitsFor, held by the next step's goroutine (the last by the first).
	Cycle []Step `json:"cycle,omitempty"`
	// OwnerDied: the lock word carries FUTEX_OWNER_DIED (the kernel saw the
	// holder die).
	OwnerDied bool `json:"owner_died,omitempty"`
	// Doing is what a stuck holder's goroutine is doing now, from its probe:
	// its state and innermost frames; empty when the probe did not answer.
	Doing   string `json:"doing,omitempty"`
	Summary string `json:"summary"` // one line: what is wrong
	Next    string `json:"next"`    // one line: what to do next

	key string
}

// A Party is a goroutine of a process of the run.
type Party struct {
	PID       int    `json:"pid"`
	Start     uint64 `json:"start"` // /proc/PID/stat start time: pid plus start is the identity
	Goroutine int64  `json:"goroutine"`
	// Alive is true only when the process is known to run; State says more:
	// alive, dead (gone), zombie, reused (the pid now names another
	// process), unknown (the check failed).
	Alive bool       `json:"alive"`
	State string     `json:"state"`
	Role  string     `json:"role,omitempty"`
	Since time.Time  `json:"since,omitzero"`  // acquired (holder) or began waiting (waiter)
	For   Duration   `json:"for_ms"`          // how long, up to Taken
	Where *FrameJSON `json:"where,omitempty"` // the call site that took or waits for the lock
}

// A Step is one goroutine of a cycle and the lock it waits for.
type Step struct {
	Party
	WaitsFor string `json:"waits_for"`
}

// LockRow is one lock.
type LockRow struct {
	Name      string `json:"name"`
	State     string `json:"state"` // free, held, owner-died
	Word      uint32 `json:"word"`  // the futex word
	Holder    *Party `json:"holder,omitempty"`
	Waiting   int    `json:"waiting"` // goroutines waiting, in all processes
	OwnerDied bool   `json:"owner_died"`
}

// WaiterRow is one waiting goroutine.
type WaiterRow struct {
	Party
	Lock string `json:"lock"`
}

// ProcRow is one process of the run's process table.
type ProcRow struct {
	PID     int       `json:"pid"`
	Start   uint64    `json:"start"`
	Role    string    `json:"role,omitempty"`
	Command string    `json:"command,omitempty"`
	Alive   bool      `json:"alive"`
	State   string    `json:"state"` // alive, dead, zombie, reused, unknown
	Started time.Time `json:"started,omitzero"`
	// Exit is "closed" when the process closed its registry (a clean exit),
	// "died" when it is dead without having closed it, "" while alive.
	Exit     string    `json:"exit,omitempty"`
	ExitedAt time.Time `json:"exited_at,omitzero"`
	Robust   bool      `json:"robust"` // the kernel marks its locks if it dies
}

// EventRow is one recent event of a lock that a finding names.
type EventRow struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Lock      string    `json:"lock"`
	PID       int       `json:"pid"`
	Goroutine int64     `json:"goroutine"`
}

// StackRow is a group of involved goroutines with the same stack.
type StackRow struct {
	PID  int    `json:"pid"`
	Lock string `json:"lock,omitempty"`
	// What the goroutines are to Lock: holder, waiter.
	Role string `json:"role"`
	// Source: "dictionary" (the acquire or wait site the process recorded;
	// readable after its death), "probe" (its live goroutine profile) or
	// "probe-text" (its live text dump).
	Source     string      `json:"source"`
	Count      int64       `json:"count"`
	Goroutines []int64     `json:"goroutines,omitempty"`
	State      string      `json:"state,omitempty"`
	Frames     []FrameJSON `json:"frames"`
}

// FrameJSON is one call frame.
type FrameJSON struct {
	Func string `json:"func"`
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

func frameOf(f stackdump.Frame) FrameJSON { return FrameJSON{Func: f.Func, File: f.File, Line: f.Line} }

func framesOf(fs []stackdump.Frame) []FrameJSON {
	out := make([]FrameJSON, len(fs))
	for i, f := range fs {
		out[i] = frameOf(f)
	}
	return out
}

// Duration marshals as whole milliseconds.
type Duration time.Duration

// MarshalJSON writes milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Milliseconds())
}

// UnmarshalJSON reads milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}

// Deadlock reports whether a finding says the run is stuck.
func (r *Report) Deadlock() bool {
	for _, f := range r.Findings {
		if f.Kind.Deadlock() {
			return true
		}
	}
	return false
}
