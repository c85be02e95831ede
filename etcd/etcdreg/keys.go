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
//	P/lock/NAME/owner               the lock itself: who holds it          holder's lease
//	P/lock/NAME/holder              holder record                          no lease
//	P/lock/NAME/died/REV            a waiter saw holder record REV expire   no lease
//	P/wait/NAME/PROC/GOROUTINE      waiter record                          waiter's lease
//	P/lost/NAME/PROC                a holder that lost its lease inside    its new lease
//	P/stack/PROC/ID                 symbolized stack, once per call site   no lease
//	P/event/PROC/SLOT               the process's event ring               no lease
//	P/req/PROC, P/ans/PROC          stack request and its answer           reader's / process's lease
//
// PROC is host:pid:start.

// Format is the version of the key layout and record encoding.
const Format = 1

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

func (k keys) meta() string               { return k.p + "meta" }
func (k keys) proc(pk string) string      { return k.p + "proc/" + pk }
func (k keys) alive(pk string) string     { return k.p + "alive/" + pk }
func (k keys) lockDir(name string) string { return k.p + "lock/" + esc(name) + "/" }
func (k keys) owner(name string) string   { return k.lockDir(name) + "owner" }
func (k keys) holder(name string) string  { return k.lockDir(name) + "holder" }
func (k keys) diedDir(name string) string { return k.lockDir(name) + "died/" }
func (k keys) died(name string, rev int64) string {
	return k.diedDir(name) + strconv.FormatInt(rev, 10)
}
func (k keys) waiter(name, pk string, g int64) string {
	return k.p + "wait/" + esc(name) + "/" + pk + "/" + strconv.FormatInt(g, 10)
}
func (k keys) lost(name, pk string) string { return k.p + "lost/" + esc(name) + "/" + pk }
func (k keys) stack(pk string, id uint64) string {
	return k.p + "stack/" + pk + "/" + strconv.FormatUint(id, 16)
}
func (k keys) event(pk string, slot uint64) string {
	return k.p + "event/" + pk + "/" + strconv.FormatUint(slot, 10)
}
func (k keys) req(pk string) string { return k.p + "req/" + pk }
func (k keys) ans(pk string) string { return k.p + "ans/" + pk }

// Records, as stored (JSON).

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

// OwnerRecord is P/lock/NAME/owner, bound to the holder's lease.
type OwnerRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
}

// HolderRecord is P/lock/NAME/holder: written in the acquiring transaction,
// deleted in the releasing one, never bound to a lease, so that it outlives
// a holder whose lease expired.
type HolderRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
	Stack     uint64    `json:"stack,omitempty"` // P/stack/PROC/ID
	Since     time.Time `json:"since"`           // the holder's wall clock
	Lease     int64     `json:"lease"`
	Recovered bool      `json:"recovered,omitempty"` // taken from a holder whose lease expired (Recover)
}

// WaiterRecord is P/wait/NAME/PROC/GOROUTINE.
type WaiterRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
	Stack     uint64    `json:"stack,omitempty"`
	Since     time.Time `json:"since"`
}

// LostRecord is P/lost/NAME/PROC: written by a holder that found its lease
// gone while it held NAME (it is still inside its critical section); deleted
// by its Unlock.
type LostRecord struct {
	ID        procid.ID `json:"id"`
	Goroutine int64     `json:"goroutine"`
	Stack     uint64    `json:"stack,omitempty"`
	Since     time.Time `json:"since"`      // when it took the lock
	Lease     int64     `json:"lease"`      // the lease it lost
	Noticed   time.Time `json:"noticed"`    // when it found the lease gone
	HolderRev int64     `json:"holder_rev"` // revision of its holder record
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
// Seq, all events by their etcd revision.
type EventRecord struct {
	Seq       uint64    `json:"seq"`
	Kind      EventKind `json:"kind"`
	Lock      string    `json:"lock,omitempty"`
	ID        procid.ID `json:"id"` // whom the event is about
	Goroutine int64     `json:"goroutine,omitempty"`
	Stack     uint64    `json:"stack,omitempty"`
	Time      time.Time `json:"time"`
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
