// Package lockstate is what a kind of lock tells the diagnosis: who holds
// each lock, who waits for it, which processes take part, what happened
// lately, and any proof the backend itself has that a holder died. It is to
// report what database/sql/driver is to database/sql: report
// declares it and diagnoses it, each backend (lockreg's shared-memory arena,
// the in-process drop-in, etcd) adapts to it in a package of its own, and
// report imports no backend.
//
// A backend implements Source:
//
//	type etcdSource struct{ ... }
//
//	func (s etcdSource) Read(ctx context.Context) (*lockstate.Snapshot, error) {
//		snap := &lockstate.Snapshot{Run: s.prefix, Taken: time.Now()}
//		// for each lock key: a Lock{Kind: "etcd", Name: ..., Holders: ..., Waiters: ...}
//		// for each session: a Process{ID: procid.ID{Host: ..., PID: ..., Start: ...}, Status: ...}
//		return snap, nil
//	}
//
// What one kind knows and the others do not (a file lock's range, lockreg's
// futex word, an etcd lease) is a named fact (Facts), never a field here: a
// new kind of lock changes neither this model nor the report. Every source
// passes the conformance suite, lockstate/lockstatetest.
//
// The values are plain data: the diagnosis is a pure function of a
// Snapshot and the liveness of the processes it names. Only the stacks are
// read through an interface (Resolver), when the report is built, since a
// backend may keep them in files it reads only when asked.
package lockstate

import (
	"context"
	"time"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// A Source reads one backend's locks. Read must return when ctx ends and
// must never wait for the locks it reads (a reader of a deadlocked run must
// not join the deadlock). Its errors are the backend's own, returned as they
// are, so that a caller can match them (errors.Is, errors.As).
type Source interface {
	Read(ctx context.Context) (*Snapshot, error)
}

// A Sketcher is a Source that can read a sketch: a snapshot of only the
// locks that someone waits for (each with every holder and waiter, and
// their processes), where the locks nobody waits for are many and dear to
// read (a process holding 10,000 file locks). The diagnosis reads a sketch
// first when a source offers one, for the findings a later snapshot must
// confirm, and builds the report from a full Read, always. A sketch that
// lacks a finding's lock costs the diagnosis one more Read, never a wrong
// report.
type Sketcher interface {
	Source
	Sketch(ctx context.Context) (*Snapshot, error)
}

// A Snapshot is the state of a backend's locks at one moment.
type Snapshot struct {
	// Run names what was read: a run directory, an etcd prefix.
	Run   string
	Taken time.Time // when it was read; durations are measured up to it

	Processes []Process
	Locks     []Lock
	Events    []Event // oldest first

	// Orders are the lock-order edges the backend recorded: each says that
	// a goroutine took one lock while it held another. Nil when the backend
	// records none.
	Orders []OrderEdge
	// OrdersDropped counts edges the backend saw but could not record (its
	// table was full): a cycle through them is missed.
	OrdersDropped uint64

	// Stacks resolves the stack ids of holders, waiters and events; nil
	// when the backend records no stacks.
	Stacks Resolver
	// WaitLabel is the pprof label the backend puts on goroutines waiting
	// for one of its locks, with the lock's name as its value; "" if none.
	// Live stacks from a probe are matched to waiters by it.
	WaitLabel string
	// Notes say what the backend could not read: records left out because
	// they stayed mid-write, a store that answered in part.
	Notes []string
	// Unlisted counts locks the backend read but left out of Locks because
	// nobody holds or awaits them, by what they are (a singular noun:
	// "drop-in mutex"): a report says the counts, so that its reader knows
	// which locks were looked at and found free.
	Unlisted map[string]int
}

// A Party is one goroutine of one process: a node of the wait-for graph.
type Party struct {
	procid.ID
	// Goroutine is the goroutine's id; 0 means not known (a holder named
	// only by its lock word). A party with goroutine 0 is never part of a
	// cycle, since it cannot be told apart from the process's other
	// goroutines. A backend that knows processes but no goroutines (a
	// session of a distributed store) numbers them itself, from 1.
	Goroutine int64
}

// WholeProcess as a Party's Goroutine names the process as a whole, not one
// of its goroutines: the party of a lock that belongs to a process or to an
// open file description (a kernel file lock), never to a thread. It never
// equals a goroutine's id, so a process's goroutines and the process as a
// whole are different nodes of the wait-for graph; processes as wholes form
// cycles with each other.
const WholeProcess int64 = -1

// A Lock is one lock: a kind and a name, the goroutines that hold it (any
// number of readers, or one writer) and those that wait for it.
type Lock struct {
	// Kind names the backend's kind of lock: "lockreg", "mutex", "rwmutex",
	// "etcd". Locks are told apart by kind and name.
	Kind string
	Name string

	Holders []Holder
	Waiters []Waiter // longest-waiting first

	// Abandoned is the backend's own proof that the lock's holder died
	// holding it (the kernel's FUTEX_OWNER_DIED, a lease the store expired),
	// nil without one. Holders then names the dead holder if a record
	// survived, and is empty if none did: the lock is held by a dead
	// process nobody can name.
	Abandoned *Proof
	// Lost lists the goroutines that held the lock and lost it without
	// releasing it: the backend took it from them (etcd expired their lease)
	// while, as far as they know, they are still inside their critical
	// section. Holders names who holds the lock now, if anyone does.
	Lost []Loss
	// Recovery says, for a finding's next step, what the waiters of a dead
	// holder's lock can do: "waiters never get it under the Stall policy:
	// kill the run, or use the Recover policy to repair and take it". ""
	// gives a generic advice.
	Recovery string

	// Facts are the backend's own facts about the lock, shown in the
	// report, never used by the diagnosis.
	Facts Facts
}

// Key names a lock among the locks of every kind.
func (l *Lock) Key() Key { return Key{Kind: l.Kind, Name: l.Name} }

// Key names a lock among the locks of every kind.
type Key struct{ Kind, Name string }

// Facts are a backend's own facts about a lock or a process: what the
// diagnosis never uses but a reader may want (a file lock's type and range,
// a PostgreSQL lock's mode, lockreg's futex word, an etcd holder's lease).
// The report shows them as they are, by name, so that a new kind of lock
// shows what it knows without a change to the model or the report.
type Facts struct {
	// Extra are the facts, by name, in the order the backend gives them
	// ("type": "FLOCK WRITE", "file": "/var/lib/app.lock").
	Extra []Fact
}

// A Fact is one named fact (Facts.Extra).
type Fact struct {
	Name, Value string
	// Raw marks a value for programs rather than for readers (a lock word
	// in hex): the JSON report has it; the tables and graphs leave it out.
	Raw bool
}

// A Holder is a goroutine that holds a lock.
type Holder struct {
	Party
	Read  bool      // holds it shared (an RWMutex's RLock); false: exclusive
	Since time.Time // when it took the lock; zero if not recorded
	Stack uint64    // where it took the lock: an id for Snapshot.Stacks; 0 if not recorded
	// Inferred is the evidence when the backend did not record the holder
	// but inferred it ("a pending deferred Unlock of it in main.worker"):
	// the report labels it, and a cycle through it is an inferred cycle,
	// never a proven one. "" for a recorded holder.
	Inferred string
	// SinceSeen: Since is no record but when the reader first saw this
	// holder hold the lock, watching it (a lock that keeps no time, such
	// as etcd's own): how long it has held is a lower bound.
	SinceSeen bool
}

// A Loss is a goroutine that lost a lock it held (Lock.Lost).
type Loss struct {
	Holder
	// Says how it lost the lock, for the finding's summary: "its lease
	// 694d... expired while it held the lock".
	Says string
}

// A Waiter is a goroutine waiting for a lock. A waiter for writing waits
// for every holder. A waiter for reading waits for the writer holding the
// lock; while readers alone hold it, a reader waits only because a writer
// waits before it (the writer-preferring rule of sync.RWMutex), so it
// waits for the writers that wait.
type Waiter struct {
	Party
	Read  bool      // waits to read
	Since time.Time // when it began to wait
	Stack uint64    // where it waits: an id for Snapshot.Stacks; 0 if not recorded
}

// A Process is a process that takes part in the run.
type Process struct {
	procid.ID
	Role    string // the role it gave itself ("main", "worker"), if any
	Command string // its command line, if the backend knows it
	Started time.Time
	// Closed is true when the process ended cleanly (closed its registry,
	// its session), at ClosedAt.
	Closed   bool
	ClosedAt time.Time
	// Status is what the backend itself knows of the process's life: a
	// store that expired its lease says Expired. Unknown leaves the check to
	// the host, which can check only processes of this machine (Host "").
	Status procid.Status
	// Facts are the backend's own facts about the process (lockreg: whether
	// the kernel marks its locks if it dies), shown, never used.
	Facts Facts
}

// An Event is one recent event of a lock.
type Event struct {
	Seq  uint64
	Time time.Time
	Kind string // acquire, release, wait, stuck, timeout, owner-died, recovered...
	Lock Key
	Party
	Stack uint64
	// Token is the hold's fencing token, for a backend that gives one
	// (etcd: the holder key's create revision); 0 if none.
	Token int64
}

// An OrderEdge is an edge of the lock-order graph: the goroutine Party
// took lock To while it held lock From (From taken first, by the same
// goroutine, not yet released). A backend records each edge once, with the
// first goroutine that took it.
type OrderEdge struct {
	From, To Key
	Party
	FromStack uint64 // where it took From: an id for Snapshot.Stacks; 0 if not recorded
	ToStack   uint64 // where it took To, holding From
	Time      time.Time
}

// Reason is why a process is known to be dead: a word, shown as it is
// ("gone", "lease-expired", a backend's own "owner-died").
type Reason string

// The reasons a host or a status proves. A backend with a proof of its own
// names its reason itself (lockreg's "owner-died": the kernel marked the
// lock word); the report shows any reason as it is.
const (
	// Gone: no process has the pid.
	Gone Reason = "gone"
	// Zombie: the process exited and waits to be reaped.
	Zombie Reason = "zombie"
	// Reused: the pid names another process now.
	Reused Reason = "reused"
	// LeaseExpired: the process's lease in a distributed store ran out.
	LeaseExpired Reason = "lease-expired"
)

// ReasonOf returns the reason a dead status proves, and "" for Alive and
// Unknown.
func ReasonOf(st procid.Status) Reason {
	switch st {
	case procid.Gone:
		return Gone
	case procid.Zombie:
		return Zombie
	case procid.Reused:
		return Reused
	case procid.Expired:
		return LeaseExpired
	}
	return ""
}

// A Proof is a backend's proof that a holder died.
type Proof struct {
	Reason Reason
	// Says, for the report's one-line summary, who proved it: "the kernel
	// marked it OWNER_DIED", "its lease expired".
	Says string
}

// A Resolver turns a recorded stack id into frames, innermost first. The
// report calls it from one goroutine at a time.
type Resolver interface {
	// Stack returns the frames of the stack id that the process p
	// recorded; ok is false when it is unknown.
	Stack(p procid.ID, id uint64) (frames []stackdump.Frame, ok bool)
}
