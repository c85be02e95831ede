// Package probeclient is lockwatch's client of the probe (package probe):
// it asks a process's agent over its control socket (protocol:
// internal/rt/probewire), within bounds that a damaged or hostile probe
// cannot pass, and reads its answers as views with stackdump frames.
package probeclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// ErrNoAnswer is returned, wrapped, when a probe accepted the connection but
// did not answer in time, or hung up before answering.
var ErrNoAnswer = errors.New("the probe did not answer")

// An AnswerError is an error the probe answered with: the request was
// refused (a malformed request, another user, too many requests at once) or
// failed in the probe.
type AnswerError struct {
	Op      string // the request's op
	Message string // the probe's words
}

func (e *AnswerError) Error() string { return fmt.Sprintf("probe: %s: %s", e.Op, e.Message) }

// defaultTimeout is Client.Timeout's default.
const defaultTimeout = 2 * time.Second

// What a client accepts from a probe, so that a damaged or hostile probe
// (anything can listen on a socket path) cannot exhaust the reader's memory:
// far beyond what a probe sends. An answer is a few KiB (its locks: some
// 100 bytes each); a goroutine profile is bounded by what
// stackdump.ParseProfile reads; a text dump takes some 700 bytes a
// goroutine, so MaxTextDump is some 45,000 goroutines.
const (
	// MaxTextDump is the largest text dump a Client accepts.
	MaxTextDump = 32 << 20
)

// A Client asks the probe of one process. Its zero value is not usable: set
// Path. A Client is safe for concurrent use: each request has its own
// connection.
type Client struct {
	Path    string        // the control socket, see SocketPath
	Timeout time.Duration // for each request, from dialling to the end of the answer; default 2s
}

// Info asks the probe about its process.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	ans, _, err := c.do(ctx, probewire.Request{Op: probewire.OpInfo})
	if err != nil {
		return nil, err
	}
	if ans.Info == nil {
		return nil, &AnswerError{Op: probewire.OpInfo, Message: "answer without info"}
	}
	return ans.Info, nil
}

// Goroutines asks for a goroutine dump: by default the goroutine profile
// (Format "proto", pprof labels included: lockreg labels a goroutine waiting
// for a lock "lockwatch.wait"=<lock name>), which stops the process only
// briefly; with text, the traceback of every goroutine with its id, state
// and wait time (Format "text"), which stops the process for the whole dump
// (some 100-300 ms at 10,000 goroutines).
func (c *Client) Goroutines(ctx context.Context, text bool) (*Dump, error) {
	ans, data, err := c.do(ctx, probewire.Request{Op: probewire.OpGoroutines, Text: text})
	if err != nil {
		return nil, err
	}
	if ans.Dump == nil {
		return nil, &AnswerError{Op: probewire.OpGoroutines, Message: "answer without a dump"}
	}
	ans.Dump.Data = data
	return ans.Dump, nil
}

// GoroutineTrace asks for a short execution trace of the process (Format
// "trace"; read it with stackdump.ParseTrace): every goroutine's id, state
// and stack, as a text dump has them, while the process's world is stopped
// only for moments, to start and to end the trace, where a text dump stops
// it for the whole dump. The probe answers an error when the
// program is tracing itself (its execution tracer takes one trace at a
// time), and a profile if it predates traces: the error then says so.
func (c *Client) GoroutineTrace(ctx context.Context) (*Dump, error) {
	ans, data, err := c.do(ctx, probewire.Request{Op: probewire.OpGoroutines, Trace: true})
	if err != nil {
		return nil, err
	}
	if ans.Dump == nil {
		return nil, &AnswerError{Op: probewire.OpGoroutines, Message: "answer without a dump"}
	}
	if ans.Dump.Format != FormatTrace {
		return nil, &AnswerError{Op: probewire.OpGoroutines, Message: fmt.Sprintf("asked for an execution trace, answered a %q dump (a probe older than traces)", ans.Dump.Format)}
	}
	ans.Dump.Data = data
	return ans.Dump, nil
}

// Locks asks for the locks the process holds and the goroutines of it that
// wait for one.
func (c *Client) Locks(ctx context.Context) (*LockView, error) {
	ans, _, err := c.do(ctx, probewire.Request{Op: probewire.OpLocks})
	if err != nil {
		return nil, err
	}
	if ans.Locks == nil {
		return nil, &AnswerError{Op: probewire.OpLocks, Message: "answer without locks"}
	}
	return ans.Locks, nil
}

// StandDown asks the probe to stand down (probewire.OpStandDown): once it
// has answered, it closes its socket and ends its goroutines and timers, so
// that the runtime's own deadlock detection ends a program whose goroutines
// are all blocked. It comes back by itself if the program runs on.
func (c *Client) StandDown(ctx context.Context) error {
	_, _, err := c.do(ctx, probewire.Request{Op: probewire.OpStandDown})
	return err
}

// do sends a request and reads its answer, and the dump frame if the answer
// announces one. A failure to connect keeps its *net.OpError (wrapping, for
// instance, syscall.ENOENT or syscall.ECONNREFUSED: no probe listens); a
// failure after connecting wraps ErrNoAnswer.
func (c *Client) do(ctx context.Context, q probewire.Request) (*answer, []byte, error) {
	q.V = probewire.Version
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("probe: %s: %w: %w", c.Path, ErrNoAnswer, err)
		}
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	defer conn.Close()
	if err := checkPeer(conn); err != nil {
		return nil, nil, fmt.Errorf("probe: %s: %w", c.Path, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Cancellation before the deadline ends the I/O too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	noAnswer := func(what string, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return fmt.Errorf("probe: %s: %w (%s %s request): %w", c.Path, ErrNoAnswer, what, q.Op, err)
	}
	b, err := json.Marshal(q)
	if err != nil {
		return nil, nil, err
	}
	// A probe that refuses a connection (another user, too many requests)
	// answers without reading the request: read its answer even if the
	// request could not be sent.
	sendErr := probewire.WriteFrame(conn, b)
	b, err = probewire.ReadFrame(conn, probewire.MaxAnswer)
	if err != nil {
		if sendErr != nil {
			return nil, nil, noAnswer("sending the", sendErr)
		}
		return nil, nil, noAnswer("reading the answer to the", err)
	}
	if err := checkAnswerSize(c.Path, b); err != nil {
		return nil, nil, err
	}
	var ans answer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, nil, fmt.Errorf("probe: %s: unreadable answer %.64q: %w", c.Path, b, err)
	}
	if ans.V != probewire.Version {
		return nil, nil, fmt.Errorf("probe: %s: answer in protocol version %d; this client speaks version %d", c.Path, ans.V, probewire.Version)
	}
	if !ans.OK {
		return nil, nil, &AnswerError{Op: q.Op, Message: ans.Error}
	}
	if ans.Dump == nil {
		return &ans, nil, nil
	}
	limit := stackdump.MaxProfileSize
	switch ans.Dump.Format {
	case FormatText:
		limit = MaxTextDump
	case FormatTrace:
		limit = stackdump.MaxTraceSize
	}
	if ans.Dump.Size > limit {
		return nil, nil, fmt.Errorf("probe: %s: %w: the probe announces a %s dump of %d bytes, more than the %d MiB lockwatch reads",
			c.Path, stackdump.ErrTooLarge, ans.Dump.Format, ans.Dump.Size, limit>>20)
	}
	data, err := probewire.ReadFrame(conn, limit)
	if err != nil {
		return nil, nil, noAnswer("reading the dump of the", err)
	}
	return &ans, data, nil
}

// checkPeer refuses a socket served by another user: anyone who can write
// where the socket lives could have put their own in its place.
func checkPeer(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("reading the probe's credentials: %w", cerr)
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("the socket is served by pid %d of uid %d, not by a process of yours (uid %d): refused", cred.Pid, cred.Uid, os.Getuid())
	}
	return nil
}

// Mutexes asks for the process's drop-in mutexes that are held or awaited.
func (c *Client) Mutexes(ctx context.Context) (*MutexView, error) {
	ans, _, err := c.do(ctx, probewire.Request{Op: probewire.OpMutexes})
	if err != nil {
		return nil, err
	}
	if ans.Mutexes == nil {
		return nil, &AnswerError{Op: probewire.OpMutexes, Message: "answer without mutexes"}
	}
	return ans.Mutexes, nil
}

// MutexesAndOrders asks, in one request, for the process's drop-in
// mutexes that are held or awaited and for their lock-order edges (what
// Mutexes and Orders answer). The edges are nil if the probe answered the
// mutexes alone (it predates the combined request, or both would not fit
// in one answer): ask Orders for them.
func (c *Client) MutexesAndOrders(ctx context.Context) (*MutexView, *OrderView, error) {
	ans, _, err := c.do(ctx, probewire.Request{Op: probewire.OpMutexes, Orders: true})
	if err != nil {
		return nil, nil, err
	}
	if ans.Mutexes == nil {
		return nil, nil, &AnswerError{Op: probewire.OpMutexes, Message: "answer without mutexes"}
	}
	return ans.Mutexes, ans.Orders, nil
}

// Orders asks for the lock-order edges of the process's drop-in mutexes.
func (c *Client) Orders(ctx context.Context) (*OrderView, error) {
	ans, _, err := c.do(ctx, probewire.Request{Op: probewire.OpOrders})
	if err != nil {
		return nil, err
	}
	if ans.Orders == nil {
		return nil, &AnswerError{Op: probewire.OpOrders, Message: "answer without orders"}
	}
	return ans.Orders, nil
}

// The views of a probe's answers, with stackdump frames.
type (
	Info        = probewire.Info
	Dump        = probewire.Dump
	LockView    = probewire.LockView[stackdump.Frame]
	HeldLock    = probewire.HeldLock[stackdump.Frame]
	WaitingLock = probewire.WaitingLock[stackdump.Frame]
	MutexView   = probewire.MutexView[stackdump.Frame]
	Mutex       = probewire.Mutex[stackdump.Frame]
	MutexHolder = probewire.MutexHolder[stackdump.Frame]
	MutexWaiter = probewire.MutexWaiter[stackdump.Frame]
	OrderView   = probewire.OrderView[stackdump.Frame]
	OrderEdge   = probewire.OrderEdge[stackdump.Frame]
	OrderMutex  = probewire.OrderMutex
	answer      = probewire.Answer[stackdump.Frame]
)

// Dump formats.
const (
	FormatProto = probewire.FormatProto
	FormatText  = probewire.FormatText
	FormatTrace = probewire.FormatTrace
)

// SocketPath returns the path of the control socket of the process id in the
// run directory dir.
func SocketPath(dir string, id procid.ID) string { return probewire.SocketPath(dir, id) }

// OrdersFile returns the name, in the run directory, of the file where the
// process of socket base name base keeps its edges for after it exits.
func OrdersFile(base string) string { return probewire.OrdersFile(base) }

// DownFile returns the name, in the run directory, of the file a probe
// keeps while it stands down (see probewire.DownFile).
func DownFile(base string) string { return probewire.DownFile(base) }

// NoMutexesFile returns the name, in the run directory, of the file that
// said a process had no drop-in mutex (see probewire.NoMutexesFile).
func NoMutexesFile(base string) string { return probewire.NoMutexesFile(base) }

// ViewOf is the MutexView of a snapshot of the drop-in records of process
// pid (start), read from outside it: wall places a record's time
// (Nanotime's scale), frames symbolizes its PCs from the process's binary.
func ViewOf(s inproc.Snapshot, pid int, start uint64, wall func(int64) time.Time, frames func([]uintptr) []stackdump.Frame) *MutexView {
	lean := func(pcs []uintptr) []record.Frame {
		fs := frames(pcs)
		if fs == nil {
			return nil
		}
		out := make([]record.Frame, len(fs))
		for i, f := range fs {
			out[i] = record.Frame{Func: f.Func, File: f.File, Line: f.Line}
		}
		return out
	}
	return probewire.ViewOf(s, pid, start, wall, lean, func(f record.Frame) stackdump.Frame {
		return stackdump.Frame{Func: f.Func, File: f.File, Line: f.Line}
	})
}
