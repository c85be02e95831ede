package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/lockreg"
)

// errorWriteTimeout bounds the write of an error or busy answer. Such an
// answer is a few hundred bytes written into a fresh connection, which never
// blocks; the deadline only bounds a pathological peer. It must not be short
// enough for a busy machine's scheduling delay between setting it and
// writing (100 ms was: the answer was dropped under load).
const errorWriteTimeout = time.Second

// track records an open connection for Close; false once closed.
func (a *Agent) track(c *os.File) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.conns[c] = struct{}{}
	return true
}

func (a *Agent) untrack(c *os.File) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns, c)
	_ = c.Close()
}

// handle serves one connection: one request, one answer. Every step has a
// deadline, so a client that stalls costs a slot for at most probewire.RequestTimeout
// (or probewire.AnswerTimeout once it has been answered).
func (a *Agent) handle(c *os.File) {
	_ = c.SetDeadline(time.Now().Add(probewire.RequestTimeout))
	if uid, err := peerUID(c); err != nil || uid != a.uid {
		msg := fmt.Sprintf("permission denied: peer uid %d is not this process's user (uid %d)", uid, a.uid)
		if err != nil {
			msg = fmt.Sprintf("permission denied: peer credentials: %v", err)
		}
		_ = writeAnswer(c, &answer{Error: msg}, nil)
		return
	}
	q, err := probewire.DecodeRequest(c)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			msg = fmt.Sprintf("no complete request within %v", probewire.RequestTimeout)
		}
		// A client that is gone does not read this; the others learn why.
		_ = c.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
		_ = writeAnswer(c, &answer{Error: msg}, nil)
		return
	}
	ans, data := a.answer(q)
	_ = c.SetDeadline(time.Now().Add(probewire.AnswerTimeout))
	_ = writeAnswer(c, ans, data)
	if q.Op == probewire.OpStandDown {
		a.standDown() // answered first, so that the client knows
	}
}

// combinedMax is the largest answer that carries both the mutexes and the
// lock-order edges: what a client reads whole (a variable for the tests).
var combinedMax = probewire.MaxAnswer

// answer performs a request.
func (a *Agent) answer(q request) (*answer, []byte) {
	switch q.Op {
	case probewire.OpInfo:
		return &answer{OK: true, Info: a.info()}, nil
	case probewire.OpGoroutines:
		format := probewire.FormatProto
		switch {
		case q.Text:
			format = probewire.FormatText
		case q.Trace:
			format = probewire.FormatTrace
		}
		d, err := a.dump.capture(format)
		if err != nil {
			return &answer{Error: err.Error()}, nil
		}
		return &answer{OK: true, Dump: d}, d.Data
	case probewire.OpLocks:
		v, err := a.locks()
		if err != nil {
			return &answer{Error: err.Error()}, nil
		}
		return &answer{OK: true, Locks: v}, nil
	case probewire.OpMutexes:
		ans := &answer{OK: true, Mutexes: a.mutexes()}
		if q.Orders {
			// Together only while a client reads the answer whole; else
			// it asks for the edges on their own. The JSON measured is
			// the JSON sent (answer.raw).
			ans.Orders = a.orders()
			ans.V = probewire.Version
			if b, err := json.Marshal(ans); err == nil && len(b) <= combinedMax {
				ans.Raw = b
			} else {
				ans.Orders = nil
			}
		}
		return ans, nil
	case probewire.OpOrders:
		return &answer{OK: true, Orders: a.orders()}, nil
	case probewire.OpStandDown:
		return &answer{OK: true}, nil // handle stands down once answered
	}
	return &answer{Error: fmt.Sprintf("unknown op %q", q.Op)}, nil // decodeRequest let it through
}

// writeAnswer writes the answer frame, and data in a second frame when the
// answer has a dump.
func writeAnswer(c io.Writer, ans *answer, data []byte) error {
	b := ans.Raw
	if b == nil {
		ans.V = probewire.Version
		var err error
		if b, err = json.Marshal(ans); err != nil {
			return err
		}
	}
	if err := probewire.WriteFrame(c, b); err != nil || ans.Dump == nil {
		return err
	}
	return probewire.WriteFrame(c, data)
}

// peerUID returns the user id of the process at the other end of c, as the
// kernel recorded it when that process connected.
func peerUID(c *os.File) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// info describes this process.
func (a *Agent) info() *probewire.Info {
	exe, _ := os.Executable()
	robust := a.reg.Robust()
	why := ""
	if !robust {
		if ok, w := lockreg.RobustList(); ok {
			why = "the kernel's robust list of this process is full"
		} else {
			why = w
		}
	}
	a.mu.Lock()
	role := a.role
	a.mu.Unlock()
	return &probewire.Info{PID: a.self.PID, Start: a.self.Start, Exe: exe, Args: os.Args, Role: role, Go: runtime.Version(),
		Goroutines: runtime.NumGoroutine(), Dir: a.dir, Robust: robust, NoRobust: why, Time: time.Now()}
}

// locks is this process's part of the registry's snapshot.
func (a *Agent) locks() (*lockView, error) {
	s, err := arena.ReadSnapshot(a.dir)
	if err != nil {
		return nil, err
	}
	v := &lockView{PID: a.self.PID, Start: a.self.Start, Taken: s.Taken, Held: []heldLock{}, Waiting: []waitingLock{}}
	frames := func(id uint64) []record.Frame {
		if id == 0 {
			return nil
		}
		f, _ := s.Stack(a.self, id)
		return f
	}
	byIndex := make(map[int]arena.Lock, len(s.Locks))
	for _, l := range s.Locks {
		byIndex[l.Index] = l
		// While this process lives, its pid in a lock word is its own.
		if l.HolderPID != a.self.PID {
			continue
		}
		h := heldLock{Lock: l.Name, Waiting: l.Waiting}
		if l.Holder != nil && l.Holder.Identity() == a.self {
			h.Goroutine, h.Stack, h.Since = l.Holder.Goroutine, frames(l.Holder.Stack), l.Holder.Since
		}
		v.Held = append(v.Held, h)
	}
	for _, w := range s.Waiters {
		if w.Identity() != a.self {
			continue
		}
		wl := waitingLock{Lock: w.LockName, Goroutine: w.Goroutine, Stack: frames(w.Stack), Since: w.Since}
		if l, ok := byIndex[w.Lock]; ok {
			wl.HolderPID, wl.OwnerDied = l.HolderPID, l.OwnerDied
			if l.Holder != nil && (l.Holder.PID == l.HolderPID || l.OwnerDied) {
				wl.HolderGoroutine = l.Holder.Goroutine
				if l.OwnerDied {
					wl.HolderPID = l.Holder.PID
				}
			}
		}
		v.Waiting = append(v.Waiting, wl)
	}
	sort.Slice(v.Held, func(i, j int) bool { return v.Held[i].Lock < v.Held[j].Lock })
	sort.Slice(v.Waiting, func(i, j int) bool {
		x, y := v.Waiting[i], v.Waiting[j]
		if x.Lock != y.Lock {
			return x.Lock < y.Lock
		}
		if !x.Since.Equal(y.Since) {
			return x.Since.Before(y.Since)
		}
		return x.Goroutine < y.Goroutine
	})
	return v, nil
}
