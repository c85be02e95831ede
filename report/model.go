package report

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// These types are the JSON report, documented field by field in
// docs/json.md. They are built for readers, not copied from a backend.

// Schema names the report's JSON format; it changes when a field changes
// meaning or goes away (added fields do not change it). v2: a backend's
// own facts are named facts of a lock or a process (lockreg's futex word
// and robust flag among them), and a finding's proof names its reason.
const Schema = "lockwatch.report/v2"

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
	// OrdersDropped counts lock-order edges the backends could not record
	// (their tables were full): a lock-order cycle through them is missed.
	OrdersDropped uint64 `json:"orders_dropped,omitempty"`
	// Unlisted counts locks that were read and found free but are not in
	// Locks, by what they are (a probe lists only the drop-in mutexes held
	// or awaited): {"drop-in mutex": 2}.
	Unlisted map[string]int `json:"unlisted,omitempty"`
}

// Kind is a finding's kind: a value whose meaning (its severity, whether it
// is a deadlock) is a row of the kinds table, so that a new kind is one
// constant and one row, and nothing that renders findings changes.
type Kind string

// The kinds of finding, most severe first.
const (
	DeadHolder Kind = "dead-holder"
	// LostLock: a goroutine lost a lock while it held it (its lease
	// expired) and runs on inside its critical section, maybe beside the
	// lock's new holder: mutual exclusion is broken, though nothing hangs.
	LostLock Kind = "lost-lock"
	Cycle    Kind = "cycle"
	// InferredCycle: goroutines wait for each other through at least one
	// holder that its backend inferred from evidence (Party.Inferred)
	// rather than recorded. Not proof, so not a Deadlock: nothing is ever
	// killed for it.
	InferredCycle Kind = "inferred-cycle"
	SelfDeadlock  Kind = "self-deadlock"
	StuckHolder   Kind = "stuck-holder"
	StaleWaiter   Kind = "stale-waiter"
	// LockOrder: locks taken in both orders (a cycle of the lock-order
	// graph), by goroutines that may never have overlapped: a warning.
	LockOrder Kind = "lock-order"
)

// kinds is every kind, most severe first, with whether it means the run
// is stuck.
var kinds = [...]struct {
	kind     Kind
	deadlock bool
}{
	{DeadHolder, true},
	{LostLock, false},
	{Cycle, true},
	{InferredCycle, false},
	{SelfDeadlock, true},
	{StuckHolder, true},
	{StaleWaiter, false},
	{LockOrder, false},
}

// rank orders kinds by severity; an unknown kind sorts last.
func (k Kind) rank() int {
	for i, row := range kinds {
		if row.kind == k {
			return i
		}
	}
	return len(kinds)
}

// Deadlock reports whether findings of kind k mean the run is stuck: every
// kind but stale-waiter.
func (k Kind) Deadlock() bool {
	r := k.rank()
	return r < len(kinds) && kinds[r].deadlock
}

// A Finding is one thing wrong with the run.
type Finding struct {
	Kind Kind   `json:"kind"`
	Lock string `json:"lock,omitempty"` // the lock at fault; for a cycle, the first lock of the loop
	// LockKind is Lock's kind of lock: lockreg, mutex, rwmutex, etcd.
	LockKind string `json:"lock_kind,omitempty"`
	// Holder holds Lock (nil for stale-waiter).
	Holder *Party `json:"holder,omitempty"`
	// Waiters wait for Lock; for a stale-waiter, the dead waiter.
	Waiters []Party `json:"waiters"`
	// Cycle is the loop, for a cycle: each step's goroutine waits for
	// WaitsFor, held by the next step's goroutine (the last by the first).
	Cycle []Step `json:"cycle,omitempty"`
	// Proof is, for a dead-holder, the reason of the lock's backend's own
	// proof that its holder died (lockreg's owner-died: the kernel marked
	// the lock word; an etcd lease-expired); absent when only the host
	// proved the death.
	Proof string `json:"proof,omitempty"`
	// Behind lists, for a dead-holder, the goroutines stuck behind its
	// waiters: each waits for a lock (of any kind) held by a waiter of the
	// dead holder's lock, or by a goroutine already listed, so the chain
	// runs from the dead process to the last goroutine stuck behind it.
	Behind []Step `json:"behind,omitempty"`
	// Others counts, for a cycle, the goroutines caught in the same knot of
	// waits besides the loop's own (several edges per goroutine: readers,
	// queued writers).
	Others int `json:"others,omitempty"`
	// Order is the loop, for a lock-order finding: each step took its To
	// while holding its From, and the last step's To is the first's From.
	Order []OrderStep `json:"order,omitempty"`
	// Doing is what a stuck holder's goroutine is doing now, from its probe:
	// its state and innermost frames; empty when the probe did not answer.
	Doing   string `json:"doing,omitempty"`
	Summary string `json:"summary"` // one line: what is wrong
	Next    string `json:"next"`    // one line: what to do next

	// proven: the backend itself proved the death (the kernel's
	// OWNER_DIED, an expired lease): no second snapshot is needed.
	proven bool
}

// Key names a finding across reports: the same key is the same thing going
// wrong (kind, lock, the goroutines at fault), however long it has lasted
// and however many goroutines wait. Diagnose confirms a finding by its key
// in a second snapshot; run and watch tell new findings from old by it.
func (f *Finding) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s/%s", f.Kind, f.LockKind, f.Lock)
	if f.Holder != nil {
		fmt.Fprintf(&b, "|h:%s", f.Holder.node())
	}
	switch {
	case len(f.Cycle) > 0:
		for _, st := range f.Cycle {
			fmt.Fprintf(&b, "|%s>%s", st.node(), st.WaitsFor)
		}
	case len(f.Order) > 0:
		for _, st := range f.Order {
			fmt.Fprintf(&b, "|%s>%s", st.From, st.To)
		}
	case f.Kind == StaleWaiter:
		for _, p := range f.Waiters {
			fmt.Fprintf(&b, "|w:%s", p.node())
		}
	}
	return b.String()
}

// A Party is a goroutine of a process of the run.
type Party struct {
	// Host is the machine, for locks held across machines; absent for
	// this machine.
	Host      string `json:"host,omitempty"`
	PID       int    `json:"pid"`
	Start     uint64 `json:"start"` // /proc/PID/stat start time: pid plus start is the identity
	Goroutine int64  `json:"goroutine"`
	// Alive is true only when the process is known to run; State says more:
	// alive, dead (gone), zombie, reused (the pid now names another
	// process), unknown (the check failed).
	Alive bool   `json:"alive"`
	State string `json:"state"`
	// Death is the proof of a death: gone, zombie, reused, lease-expired,
	// or owner-died (the lock word says so); absent unless dead.
	Death string `json:"death,omitempty"`
	Read  bool   `json:"read,omitempty"` // holds or waits for the lock shared (an RWMutex's readers)
	// Inferred is the evidence a holder was inferred from, when its
	// backend did not record it; absent for a recorded holder.
	Inferred string     `json:"inferred,omitempty"`
	Role     string     `json:"role,omitempty"`
	Since    time.Time  `json:"since,omitzero"`  // acquired (holder) or began waiting (waiter)
	For      Duration   `json:"for_ms"`          // how long, up to Taken
	Where    *FrameJSON `json:"where,omitempty"` // the call site that took or waits for the lock

	stack stackRef // resolved into Where when the report is built
}

// id is the party's process.
func (p *Party) id() procid.ID { return procid.ID{Host: p.Host, PID: p.PID, Start: p.Start} }

// node names the party's goroutine in keys.
func (p *Party) node() string { return fmt.Sprintf("%s/g%d", p.id(), p.Goroutine) }

// who names the party's process for a summary: "pid 42 [worker]", with
// its host when it is another machine.
func (p *Party) who() string {
	s := fmt.Sprintf("pid %d", p.PID)
	if p.Host != "" {
		s += " on " + p.Host
	}
	if p.Role != "" {
		s += " [" + p.Role + "]"
	}
	return s
}

// A Step is one goroutine of a cycle and the lock it waits for.
type Step struct {
	Party
	WaitsFor string `json:"waits_for"`
}

// LockRow is one lock.
type LockRow struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"` // lockreg, mutex, rwmutex, etcd
	// State is free, held, lost, or the reason of its backend's proof
	// that its holder died: owner-died, lease-expired.
	State  string `json:"state"`
	Holder *Party `json:"holder,omitempty"`
	// Holders lists every holder when there are several (readers).
	Holders []Party `json:"holders,omitempty"`
	Waiting int     `json:"waiting"` // goroutines waiting, in all processes
	// Facts are the backend's own facts about the lock (a file lock's type
	// and file, a PostgreSQL lock's mode, lockreg's futex word), in the
	// backend's order.
	Facts []Fact `json:"facts,omitempty"`
}

// A Fact is one named fact a backend gives about a lock or a process.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Raw marks a value for programs (a lock word in hex): the tables and
	// graphs leave it out.
	Raw bool `json:"raw,omitempty"`
}

// factsOf copies a backend's facts into the report.
func factsOf(fs lockstate.Facts) []Fact {
	if len(fs.Extra) == 0 {
		return nil
	}
	out := make([]Fact, len(fs.Extra))
	for i, f := range fs.Extra {
		out[i] = Fact{Name: f.Name, Value: f.Value, Raw: f.Raw}
	}
	return out
}

// WaiterRow is one waiting goroutine.
type WaiterRow struct {
	Party
	Lock     string `json:"lock"`
	LockKind string `json:"lock_kind,omitempty"`
}

// Exited is a process's state once it has ended after closing its registry
// (its session): it left the run cleanly, so it is not reported dead.
const Exited = "exited"

// ProcRow is one process of the run's process table.
type ProcRow struct {
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid"`
	Start   uint64    `json:"start"`
	Role    string    `json:"role,omitempty"`
	Command string    `json:"command,omitempty"`
	Alive   bool      `json:"alive"`
	State   string    `json:"state"` // alive, exited (closed its registry, then ended), dead, zombie, reused, expired, unknown
	Started time.Time `json:"started,omitzero"`
	// Exit is "closed" when the process closed its registry (a clean exit),
	// "died" when it is dead without having closed it, "" while alive.
	Exit     string    `json:"exit,omitempty"`
	ExitedAt time.Time `json:"exited_at,omitzero"`
	// Facts are the backend's own facts about the process (lockreg: robust,
	// whether the kernel marks its locks if it dies), in its order.
	Facts []Fact `json:"facts,omitempty"`
}

// EventRow is one recent event of a lock that a finding names.
type EventRow struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Lock      string    `json:"lock"`
	Host      string    `json:"host,omitempty"` // the machine, if another one
	PID       int       `json:"pid"`
	Goroutine int64     `json:"goroutine"`
	Token     int64     `json:"token,omitempty"` // the hold's fencing token, when the backend gives one
}

// StackRow is a group of involved goroutines with the same stack.
type StackRow struct {
	Host string `json:"host,omitempty"` // the machine, if another one
	PID  int    `json:"pid"`
	Lock string `json:"lock,omitempty"`
	// What the goroutines are to Lock: holder, waiter.
	Role string `json:"role"`
	// Source: "dictionary" (the acquire or wait site the process recorded;
	// readable after its death), "probe" (its live goroutine profile),
	// "probe-trace" (its live goroutines from a short execution trace: ids,
	// states, stacks; the default for stuck holders), "probe-text" (its
	// live text dump, with --text-dumps) or "proc" (a process that takes
	// part as a whole, in a kernel file lock: its threads' states and
	// kernel stacks, read from /proc).
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
	return strconv.AppendInt(nil, time.Duration(d).Milliseconds(), 10), nil
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

// Has reports whether r has a finding of kind k.
func (r *Report) Has(k Kind) bool {
	for _, f := range r.Findings {
		if f.Kind == k {
			return true
		}
	}
	return false
}
