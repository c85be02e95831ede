// Package probewire is the probe's protocol, shared by the agent inside the
// program (package probe) and lockwatch's client (internal/diag/probeclient):
// frames, requests, answers and the views they carry. The views are generic
// in their frame type: the agent writes record.Frame, which links no
// traceback parser into the program; the client reads the same JSON into
// stackdump.Frame.
package probewire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/procid"
)

// Version is the protocol version, the "v" of requests and answers.
const Version = 1

// Protocol limits, see the probe package's doc.
const (
	MaxRequest = 4 << 10   // bytes of a request frame
	MaxHeader  = 16 << 20  // bytes of an answer's JSON frame
	MaxDump    = 256 << 20 // bytes of an answer's dump frame

	// RequestTimeout is how long a client has, from connecting, to send its
	// request; AnswerTimeout how long it has to read the answer.
	RequestTimeout = time.Second
	AnswerTimeout  = 10 * time.Second
	// MaxConns caps the connections served at once; more are answered
	// with an error and closed.
	MaxConns = 8
)

// Request operations.
const (
	OpInfo       = "info"
	OpGoroutines = "goroutines"
	OpLocks      = "locks"
	OpMutexes    = "mutexes" // the drop-in mutexes (github.com/lockwatch/lockwatch/sync)
	OpOrders     = "orders"  // the drop-in mutexes' lock-order edges
	// OpStandDown asks the probe to stand down: it answers, then closes
	// its socket and ends its goroutines and timers, so that the runtime's
	// own deadlock detection sees the program as it would without a probe.
	// lockwatch run asks it of a process whose every goroutine is blocked.
	OpStandDown = "stand-down"
)

// Request is the JSON of a request frame.
type Request struct {
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

// Answer is the JSON of an answer frame, its views with frames of type F. Exactly one of Info, Locks,
// Mutexes, Orders and Dump is set when OK; Mutexes and Orders both, to
// mutexes with orders.
type Answer[F any] struct {
	V     int          `json:"v"`
	OK    bool         `json:"ok"`
	Error string       `json:"error,omitempty"`
	Info  *Info        `json:"info,omitempty"`
	Locks *LockView[F] `json:"locks,omitempty"`
	// Mutexes answers OpMutexes.
	Mutexes *MutexView[F] `json:"mutexes,omitempty"`
	// Orders answers OpOrders, and OpMutexes with orders.
	Orders *OrderView[F] `json:"orders,omitempty"`
	// Dump describes the dump that follows in a second frame; its Data is
	// not in the JSON.
	Dump *Dump `json:"dump,omitempty"`

	Raw []byte `json:"-"` // the answer's JSON, when the probe encoded it already
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
type LockView[F any] struct {
	PID     int              `json:"pid"`
	Start   uint64           `json:"start"`
	Taken   time.Time        `json:"taken"`
	Held    []HeldLock[F]    `json:"held"`    // by lock name
	Waiting []WaitingLock[F] `json:"waiting"` // by lock name, then longest wait first
}

// HeldLock is a lock the process holds.
type HeldLock[F any] struct {
	Lock string `json:"lock"`
	// Goroutine that took it, and where; 0 and nil when the holder record
	// is not written (lockreg.Options.NoRecord) or was being written.
	Goroutine int64     `json:"goroutine,omitempty"`
	Stack     []F       `json:"stack,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Waiting   int       `json:"waiting"` // goroutines waiting for it, in every process of the run
}

// WaitingLock is a goroutine of the process that waits for a lock.
type WaitingLock[F any] struct {
	Lock      string    `json:"lock"`
	Goroutine int64     `json:"goroutine"`
	Stack     []F       `json:"stack,omitempty"`
	Since     time.Time `json:"since"`
	// HolderPID is the holder's pid (when OwnerDied, the pid of the holder
	// that died); 0 when the lock is free or its holder is unknown.
	// HolderGoroutine is the holder's goroutine, when recorded.
	HolderPID       int   `json:"holder_pid,omitempty"`
	HolderGoroutine int64 `json:"holder_goroutine,omitempty"`
	OwnerDied       bool  `json:"owner_died,omitempty"`
}

// ErrFrame reports a frame that breaks the protocol.
var ErrFrame = errors.New("probe: bad frame")

// WriteFrame writes b with its 4-byte big-endian length.
func WriteFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ReadFrame reads a frame of at most max bytes. A longer one is refused
// before its body is read.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(max) {
		return nil, fmt.Errorf("%w: length %d (header % x), more than the %d allowed", ErrFrame, size, n, max)
	}
	b := make([]byte, size)
	if k, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %d of %d bytes: %w", ErrFrame, k, size, err)
	}
	return b, nil
}

// DecodeRequest reads one request frame and checks it.
func DecodeRequest(r io.Reader) (Request, error) {
	var q Request
	b, err := ReadFrame(r, MaxRequest)
	if err != nil {
		return q, err
	}
	if err := json.Unmarshal(b, &q); err != nil {
		return q, fmt.Errorf("%w: request %.64q: %w", ErrFrame, b, err)
	}
	if q.V != Version {
		return q, fmt.Errorf("%w: request version %d; this probe speaks version %d", ErrFrame, q.V, Version)
	}
	switch q.Op {
	case OpInfo, OpGoroutines, OpLocks, OpMutexes, OpOrders, OpStandDown:
	default:
		return q, fmt.Errorf("%w: unknown op %.64q; want %q, %q, %q, %q, %q or %q", ErrFrame, q.Op, OpInfo, OpGoroutines, OpLocks, OpMutexes, OpOrders, OpStandDown)
	}
	return q, nil
}

// MaxAnswer is the largest answer frame a client reads: an answer that
// carries both the mutexes and the lock-order edges must fit in it.
const MaxAnswer = 4 << 20

// MaxTraceSize bounds the execution trace an agent takes (and
// stackdump.MaxTraceSize the one lockwatch reads).
const MaxTraceSize = 32 << 20

// SocketPath returns the path of the control socket of the process id in the
// run directory dir.
func SocketPath(dir string, id procid.ID) string {
	_, _, base := arena.ProcessFiles(dir, id)
	return base + ".sock"
}
