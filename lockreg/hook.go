package lockreg

import (
	"time"

	"github.com/lockwatch/lockwatch/procid"
)

// StuckEvent describes an acquire that has waited too long. It is passed to
// Options.OnStuck.
type StuckEvent struct {
	Lock string // the lock's name
	Dir  string // the run directory

	// Holder is the holder record as read now; Holder.PID is 0 when the
	// lock is not held by a known process (it may have just changed hands).
	Holder Holder
	// HolderStatus says whether the holder lives: procid.Alive, or proof of
	// its death (Gone, Zombie, Reused), or Unknown.
	HolderStatus procid.Status
	// OwnerDied is set when the lock word carries FUTEX_OWNER_DIED: the
	// kernel, or a waiter that proved the death, marked it.
	OwnerDied bool

	Goroutine int64         // the waiting goroutine
	Waited    time.Duration // how long it has waited so far
	Calls     int           // 1 for the first call of this wait, then 2, 3...
}

// HolderAlive reports whether the holder is not proven dead.
func (e StuckEvent) HolderAlive() bool { return !e.OwnerDied && !e.HolderStatus.Dead() }

// Holder is a lock's holder record as the stuck hook reads it.
type Holder struct {
	PID       int
	Start     uint64 // the holder process's start time, see procid.ID
	Goroutine int64
	Stack     uint64 // stack-dictionary id of the acquire; 0 if not recorded
	Since     time.Time
	ProcSlot  int   // process-table slot, -1 if unknown
	Token     int64 // the hold's fencing token (Mutex.Token)
}

// Identity returns the holder process's identity.
func (h Holder) Identity() procid.ID { return procid.ID{PID: h.PID, Start: h.Start} }
