package probe

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// version is the protocol version this package speaks, the "v" of requests
// and answers.
const version = 1

// Protocol limits, see the package doc.
const (
	maxRequest = 4 << 10   // bytes of a request frame
	maxHeader  = 16 << 20  // bytes of an answer's JSON frame
	maxDump    = 256 << 20 // bytes of an answer's dump frame

	// requestTimeout is how long a client has, from connecting, to send its
	// request; answerTimeout how long it has to read the answer.
	requestTimeout = time.Second
	answerTimeout  = 10 * time.Second
	// maxConns caps the connections served at once; more are answered
	// with an error and closed.
	maxConns = 8
)

// Request operations.
const (
	opInfo       = "info"
	opGoroutines = "goroutines"
	opLocks      = "locks"
	opMutexes    = "mutexes" // the drop-in mutexes (github.com/lockwatch/lockwatch/sync)
	opOrders     = "orders"  // the drop-in mutexes' lock-order edges
)

// request is the JSON of a request frame.
type request struct {
	V    int    `json:"v"`
	Op   string `json:"op"`
	Text bool   `json:"text,omitempty"` // goroutines: the text dump instead of the profile
	// Trace asks goroutines for a short execution trace instead of the
	// profile: goroutine ids, states and stacks without stopping the world
	// for the traversal. A probe that predates it answers a profile.
	Trace bool `json:"trace,omitempty"`
	// Orders asks mutexes for the lock-order edges too, in the same
	// answer, which saves a report a second connection to every process.
	// A probe that predates it, or whose two answers together would pass
	// what a client reads, answers the mutexes alone: the client then asks
	// for the edges on their own.
	Orders bool `json:"orders,omitempty"`
}

// answer is the JSON of an answer frame. Exactly one of Info, Locks,
// Mutexes, Orders and Dump is set when OK; Mutexes and Orders both, to
// mutexes with orders.
type answer struct {
	V     int       `json:"v"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	Info  *Info     `json:"info,omitempty"`
	Locks *LockView `json:"locks,omitempty"`
	// Mutexes answers opMutexes.
	Mutexes *MutexView `json:"mutexes,omitempty"`
	// Orders answers opOrders, and opMutexes with orders.
	Orders *OrderView `json:"orders,omitempty"`
	// Dump describes the dump that follows in a second frame; its Data is
	// not in the JSON.
	Dump *Dump `json:"dump,omitempty"`

	raw []byte // the answer's JSON, when the probe encoded it already
}

// Info is what a probe says of its process.
type Info struct {
	PID        int       `json:"pid"`
	Start      uint64    `json:"start"` // see procid.ID
	Exe        string    `json:"exe"`
	Args       []string  `json:"args"`
	Role       string    `json:"role,omitempty"`
	Go         string    `json:"go"` // runtime.Version()
	Goroutines int       `json:"goroutines"`
	Dir        string    `json:"dir"` // the run directory
	Robust     bool      `json:"robust"`
	NoRobust   string    `json:"no_robust_reason,omitempty"` // why the kernel does not watch this process's locks
	Time       time.Time `json:"time"`                       // when the probe answered
}

// Identity returns the process's identity.
func (i Info) Identity() procid.ID { return procid.ID{PID: i.PID, Start: i.Start} }

// Dump is a goroutine dump of a probed process.
type Dump struct {
	// Format is "proto", a goroutine profile (runtime/pprof, debug=0; read
	// it with stackdump.ParseProfile or `go tool pprof`), "text", the
	// traceback of every goroutine (runtime.Stack; read it with
	// stackdump.Parse), or "trace", a short execution trace (runtime/trace;
	// read it with stackdump.ParseTrace or `go tool trace`).
	Format string    `json:"format"`
	Data   []byte    `json:"-"`
	Size   int       `json:"size"`  // len(Data)
	Taken  time.Time `json:"taken"` // when the capture began
	// Pause is how long the capture took: an upper bound of how long the
	// process's goroutines were stopped. A text dump stops them for all of
	// it; a profile only for moments of it.
	Pause time.Duration `json:"pause_ns"`
	// Stopped is the longest stop of the world the process's runtime
	// counted while the dump was taken (runtime/metrics
	// /sched/pauses/total/*, the upper bound of its histogram bucket): how
	// long all its goroutines stood still at once. A text dump's is about
	// its Pause; a profile's or a trace's a small part of it. It includes
	// any stop that something else caused meanwhile (a GC).
	Stopped time.Duration `json:"stopped_ns"`
}

// Dump formats.
const (
	FormatProto = "proto"
	FormatText  = "text"
	FormatTrace = "trace"
)

// LockView is a probed process's part of the run: the locks it holds and
// its goroutines that wait, from the registry's snapshot.
type LockView struct {
	PID     int           `json:"pid"`
	Start   uint64        `json:"start"`
	Taken   time.Time     `json:"taken"`
	Held    []HeldLock    `json:"held"`    // by lock name
	Waiting []WaitingLock `json:"waiting"` // by lock name, then longest wait first
}

// HeldLock is a lock the process holds.
type HeldLock struct {
	Lock string `json:"lock"`
	// Goroutine that took it, and where; 0 and nil when the holder record
	// is not written (lockreg.Options.NoRecord) or was being written.
	Goroutine int64             `json:"goroutine,omitempty"`
	Stack     []stackdump.Frame `json:"stack,omitempty"`
	Since     time.Time         `json:"since,omitzero"`
	Waiting   int               `json:"waiting"` // goroutines waiting for it, in every process of the run
}

// WaitingLock is a goroutine of the process that waits for a lock.
type WaitingLock struct {
	Lock      string            `json:"lock"`
	Goroutine int64             `json:"goroutine"`
	Stack     []stackdump.Frame `json:"stack,omitempty"`
	Since     time.Time         `json:"since"`
	// HolderPID is the holder's pid (when OwnerDied, the pid of the holder
	// that died); 0 when the lock is free or its holder is unknown.
	// HolderGoroutine is the holder's goroutine, when recorded.
	HolderPID       int   `json:"holder_pid,omitempty"`
	HolderGoroutine int64 `json:"holder_goroutine,omitempty"`
	OwnerDied       bool  `json:"owner_died,omitempty"`
}

// errFrame reports a frame that breaks the protocol.
var errFrame = errors.New("probe: bad frame")

// writeFrame writes b with its 4-byte big-endian length.
func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readFrame reads a frame of at most max bytes. A longer one is refused
// before its body is read.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(max) {
		return nil, fmt.Errorf("%w: length %d (header % x), more than the %d allowed", errFrame, size, n, max)
	}
	b := make([]byte, size)
	if k, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %d of %d bytes: %w", errFrame, k, size, err)
	}
	return b, nil
}

// decodeRequest reads one request frame and checks it.
func decodeRequest(r io.Reader) (request, error) {
	var q request
	b, err := readFrame(r, maxRequest)
	if err != nil {
		return q, err
	}
	if err := json.Unmarshal(b, &q); err != nil {
		return q, fmt.Errorf("%w: request %.64q: %w", errFrame, b, err)
	}
	if q.V != version {
		return q, fmt.Errorf("%w: request version %d; this probe speaks version %d", errFrame, q.V, version)
	}
	switch q.Op {
	case opInfo, opGoroutines, opLocks, opMutexes, opOrders:
	default:
		return q, fmt.Errorf("%w: unknown op %.64q; want %q, %q, %q, %q or %q", errFrame, q.Op, opInfo, opGoroutines, opLocks, opMutexes, opOrders)
	}
	return q, nil
}
