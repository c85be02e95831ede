package etcdreg

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// The key layout of a run, under its prefix P = "/lockwatch/RUN/" (see
// docs/distributed.md). Lock names, hosts and process keys are path-escaped,
// so that no segment contains a "/".
//
//	P/meta                          run record (format, created)           no lease
//	P/proc/PROC                     process record                         no lease
//	P/alive/PROC                    the process's lease, while it lives    process lease
//	P/lock/NAME/LEAF                a contender: the lock is etcd's        contender's lease
//	                                concurrency.Mutex on prefix P/lock/NAME
//	P/hold/NAME/LEAF                its shadow: the same record            no lease
//	P/died/NAME/TOKEN               a waiter saw holder TOKEN expire       no lease
//	P/lost/NAME/PROC                a holder that lost its lease inside    no lease
//	P/stack/PROC/ID                 symbolized stack, once per call site   no lease
//	P/event/PROC/SLOT               the process's event ring               no lease
//	P/event/PROC/bSLOT              its ring of batched events (releases)  no lease
//	P/req/PROC, P/ans/PROC          stack request and its answer           reader's / process's lease
//
// PROC is host:pid:start; LEAF is LEASE-ATTEMPT, in hex and decimal: one
// key per Lock call. The owner of a lock is the contender with the lowest
// create revision, its token that create revision.

// Format is the version of the key layout and record encoding.
const Format = 3

// maxValue bounds a stack answer: etcd refuses requests above 1.5 MiB by
// default (--max-request-bytes).
const maxValue = 1 << 20

var runName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Prefix returns the key prefix of run, or an error naming what is wrong
// with the name.
func Prefix(run string) (string, error) {
	if !runName.MatchString(run) {
		return "", fmt.Errorf("etcdreg: run name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", run)
	}
	return "/lockwatch/" + run + "/", nil
}

func esc(s string) string { return url.PathEscape(s) }

func unesc(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// procKey is the key segment naming process id.
func procKey(id procid.ID) string {
	return esc(id.Host) + ":" + strconv.Itoa(id.PID) + ":" + strconv.FormatUint(id.Start, 10)
}

type keys struct{ p string }

func (k keys) meta() string                  { return k.p + "meta" }
func (k keys) proc(pk string) string         { return k.p + "proc/" + pk }
func (k keys) alive(pk string) string        { return k.p + "alive/" + pk }
func (k keys) lockPrefix(name string) string { return k.p + "lock/" + esc(name) }
func (k keys) lockDir(name string) string    { return k.lockPrefix(name) + "/" }
func (k keys) shadowDir(name string) string  { return k.p + "hold/" + esc(name) + "/" }
func (k keys) diedDir(name string) string    { return k.p + "died/" + esc(name) + "/" }
func (k keys) died(name string, rev int64) string {
	return k.diedDir(name) + strconv.FormatInt(rev, 10)
}
func (k keys) lost(name, pk string) string { return k.p + "lost/" + esc(name) + "/" + pk }
func (k keys) stack(pk string, id uint64) string {
	return k.p + "stack/" + pk + "/" + strconv.FormatUint(id, 16)
}
func (k keys) event(pk string, slot uint64) string {
	return k.p + "event/" + pk + "/" + strconv.FormatUint(slot, 10)
}
func (k keys) batch(pk string, slot uint64) string {
	return k.p + "event/" + pk + "/b" + strconv.FormatUint(slot, 10)
}
func (k keys) req(pk string) string { return k.p + "req/" + pk }
func (k keys) ans(pk string) string { return k.p + "ans/" + pk }

// Records, as stored: JSON, but for HolderRecord and batches of events
// (record.go).

// RunRecord is P/meta.
type RunRecord struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
}

// ProcessRecord is P/proc/PROC: one process of the run.
type ProcessRecord struct {
	ID         procid.ID `json:"id"`
	Role       string    `json:"role,omitempty"`
	Command    string    `json:"command,omitempty"`
	Lease      int64     `json:"lease"` // the current lease; it changes when a lease is lost
	TTL        int64     `json:"ttl_s"`
	Registered time.Time `json:"registered"`
	Exited     time.Time `json:"exited,omitzero"` // set by Close: a clean exit
}

// HolderRecord is the value of a contender key P/lock/NAME/LEAF (bound to
// the contender's lease) and of its shadow P/hold/NAME/LEAF (bound to no
// lease, so that it outlives a holder whose lease expired). Both are
// written by the transaction that queues the contender and deleted by the
// one that releases or withdraws it.
type HolderRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
	Stack     uint64    `json:"stack,omitempty"` // P/stack/PROC/ID
	Since     time.Time `json:"since"`           // when it asked for the lock (its wall clock)
	Lease     int64     `json:"lease"`
	Policy    string    `json:"policy,omitempty"` // "stall" or "recover"
	// Stalled is set on a shadow by a Stall waiter that reached the front
	// of the queue behind an expired holder: it waits, it does not hold.
	Stalled bool `json:"stalled,omitempty"`
	// Held is set on a shadow by the transaction that made its contender
	// the owner, conditional on the contender key still standing: only a
	// shadow so marked is read as a holder once its key is gone. A
	// waiter's shadow (its lease expired before it owned the lock) never
	// is, whatever stood before it.
	Held bool `json:"held,omitempty"`
	// Acquired, on a shadow marked Held after its contender queued (by
	// the release that made it the owner, or by itself once it found
	// itself first), is when it became the owner (the marker's clock); the
	// shadow's mod revision is that revision. Unset when it was first as
	// it queued: then it became the owner at Since, at its key's creation.
	Acquired time.Time `json:"acquired,omitzero"`
}

// LostRecord is P/lost/NAME/PROC: written by a holder that found its lease
// gone while it held NAME (it may still be inside its critical section), or
// by the Recover waiter that took the lock from it; deleted by its Unlock.
type LostRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
	Stack     uint64    `json:"stack,omitempty"`
	Since     time.Time `json:"since"`      // when it took the lock
	Lease     int64     `json:"lease"`      // the lease it lost
	Noticed   time.Time `json:"noticed"`    // when it (or the taker) found the lease gone
	HolderRev int64     `json:"holder_rev"` // its token: the create revision of its contender key
	// TakenBy is set when a Recover waiter wrote the record as it took the
	// lock: who, with which token.
	TakenBy    *procid.ID `json:"taken_by,omitempty"`
	TakenToken int64      `json:"taken_token,omitempty"`
}

// EventKind is what happened.
type EventKind string

// Event kinds.
const (
	EventAcquire   EventKind = "acquire"
	EventRelease   EventKind = "release"
	EventWait      EventKind = "wait"
	EventStuck     EventKind = "stuck"
	EventTimeout   EventKind = "timeout"
	EventExpired   EventKind = "lease-expired" // a waiter saw the holder's lease expire with the lock held (names the holder)
	EventRecovered EventKind = "recovered"     // a waiter took an expired holder's lock (Recover)
	EventLeaseLost EventKind = "lease-lost"    // this process found its lease gone
	EventLost      EventKind = "lost-release"  // Unlock of a lock whose lease had expired
)

// EventRecord is P/event/PROC/SLOT; the ring of each process is ordered by
// Seq, all events by their etcd revision. A batch P/event/PROC/bSLOT is a
// JSON array of them, each with the revision it happened at (Rev): the
// releases, whose events are put off so that a release costs no write but
// the lock's own (see Registry).
type EventRecord struct {
	Seq       uint64    `json:"seq"`
	Kind      EventKind `json:"kind"`
	Lock      string    `json:"lock,omitempty"`
	ID        procid.ID `json:"id"` // whom the event is about
	Goroutine int64     `json:"goroutine,omitempty"`
	Stack     uint64    `json:"stack,omitempty"`
	Time      time.Time `json:"time"`
	// Token is the hold's fencing token (acquire, release, recovered,
	// lease-expired, lost-release).
	Token int64 `json:"token,omitempty"`
	// Acquired, on the event that ends a hold (release, lost-release), is
	// the hold's acquire, logged with it rather than apart (one write fewer
	// per hold); a reader shows it as an acquire event. Until then the
	// holder's record stands for it. Not set when a recovered event
	// logged the acquire.
	Acquired *AcquireRecord `json:"acquired,omitempty"`
	// Rev, on an event written after it happened (in a batch), is the
	// revision it happened at.
	Rev int64 `json:"rev,omitempty"`
}

// AcquireRecord is the acquire of a hold, carried by the event that ends it.
type AcquireRecord struct {
	Time      time.Time `json:"time"`      // when the hold began (the holder's clock)
	Goroutine int64     `json:"goroutine"` // the goroutine that took the lock
	Rev       int64     `json:"rev"`       // the revision at which it became the owner
	// Waited, if it had to wait, is when it began to (its wait is logged
	// with its acquire, at the revision of its token: when it queued).
	Waited time.Time `json:"waited,omitzero"`
}

// stackValue is P/stack/PROC/ID.
type stackValue struct {
	Frames []stackdump.Frame `json:"frames"`
}

// answer is P/ans/PROC.
type answer struct {
	Request   string `json:"request"`
	Dump      string `json:"dump"` // runtime.Stack(all) text, at most maxValue bytes
	Truncated bool   `json:"truncated,omitempty"`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the record types marshal without error
	}
	return string(b)
}
