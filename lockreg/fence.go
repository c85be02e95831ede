package lockreg

import (
	"errors"
	"fmt"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// Fencing tokens. Each lock has a 64-bit counter in its slot, beside the
// lock word; every acquire adds one to it while holding the lock, on the
// fast path and the slow one, after a wait or a dead holder's recovery, in
// whichever process: the counter's value is the new hold's token. So the
// tokens of one lock only increase, across processes and across deaths: a
// holder killed at any point leaves the counter at the last token issued (a
// single aligned store, never torn), and the next holder issues the one
// after it.
//
// Lock slots are never freed within a run, so a token is never issued
// twice by a run. A run directory that is removed and made again starts new
// counters: each starts at the wall-clock time (Unix nanoseconds) at which
// its lock was named (tokenStart). An acquire and release take well over a
// nanosecond, so a lock's counter never passes the clock, and the same
// lock in a later run starts above every token the earlier run issued,
// unless the system clock was set back between the two.

// ErrStaleToken is returned by Fence.Admit for a write whose fencing token
// is older than one the resource admitted, or whose hold has ended.
var ErrStaleToken = errors.New("lockreg: stale fencing token")

// tokenStart is the value a new lock's fencing counter starts at.
func tokenStart() uint64 { return uint64(max(time.Now().UnixNano(), 1)) }

// Token returns the fencing token of this process's hold of the lock: the
// value the acquire gave the lock's counter, larger than every token given
// to an earlier hold of the lock, in any process of the run, including a
// hold that ended with its holder's death. It is 0 when this process does
// not hold the lock. Call it between Lock (or a successful TryLock) and
// Unlock: a hold belongs to the process, so a call made while another
// goroutine of this process is taking or releasing the lock may see that
// goroutine's hold instead.
//
// Give the token to the resource the lock protects, with each write, and
// have the resource refuse tokens older than one it has admitted (Fence).
func (m *Mutex) Token() int64 {
	r := m.r
	var t uint64
	procPin() // see Registry.Close
	if !r.closed.Load() && m.s.Word.Load()&arena.TidMask == r.pid {
		t = m.s.Holder.Token.Load()
	}
	procUnpin()
	return int64(t)
}

// IsCurrent reports whether token is the token of the lock's hold now: a
// holder took the lock with it, and has neither released it, nor died
// holding it (as far as the lock word says: marked OWNER_DIED by the kernel
// or by a waiter's proof), nor been followed by another holder. Any process
// of the run may ask, for any token; it takes no lock and never waits.
//
// It reads the holder record, which pairs a holder with its token, and the
// lock word around it: true means the hold with this token was the lock's
// hold at an instant during the call. Like any check made outside the
// critical section, it is stale as soon as it returns; Fence says how to
// use it. A hold taken by a process that keeps no records
// (Options.NoRecord) cannot be told current: IsCurrent reports false.
func (m *Mutex) IsCurrent(token int64) bool {
	r := m.r
	if token <= 0 || !r.enter() {
		return false
	}
	defer r.leave()
	s := m.s
	// The word's owner, before and after the record: a waiter may set
	// the waiters bit meanwhile, which changes nothing of the hold.
	const owner = arena.TidMask | arena.OwnerDiedBit
	v := s.Word.Load() & owner
	h, ok := s.Holder.Read(arena.ReadTries)
	return ok && s.Word.Load()&owner == v && v&arena.OwnerDiedBit == 0 && h.Pid != 0 && h.Pid == v&arena.TidMask &&
		h.Token == uint64(token)
}

// A Fence is what a resource keeps to refuse the writes of stale holders:
// the highest fencing token it has admitted. A writer sends Mutex.Token
// with each write; the resource, where it applies writes one at a time,
// calls Admit and applies the write only if Admit returns nil.
//
// What it proves: the writes applied come in token order, every write of a
// hold before any write of a later hold, and a write of a hold older than
// one already admitted is refused however late it arrives (its holder
// paused, died with the write in flight, or its message was delayed). With
// Mutex set, a write whose hold is no longer the lock's current one
// (IsCurrent: released, its holder dead, or another holder since) is refused
// too, even before any later holder has written. What it cannot prove: that
// the hold lasts until the write is applied; the next holder's writes are
// still admitted after it.
//
// High must survive with the resource's state (store it with the data, and
// set it again when the resource restarts): a Fence with High 0 has
// forgotten every token it admitted, and the highest-token rule then refuses
// nothing. A Fence is not safe for concurrent use: call Admit under the same
// lock or in the same goroutine that applies the writes.
type Fence struct {
	// Mutex, if set, is the lock whose tokens the resource takes, opened in
	// the resource's own registry of the run: Admit then also requires the
	// token's hold to be current, which only holders that record (not
	// Options.NoRecord) can show: a NoRecord holder's writes are refused.
	Mutex *Mutex
	// High is the highest token admitted; 0 before the first.
	High int64
}

// Admit decides on a write that carries token: nil, after raising High to
// token, if the write may be applied; an error wrapping ErrStaleToken, which
// says why, if it must be refused. A token equal to High is admitted again:
// a hold may write many times.
func (f *Fence) Admit(token int64) error {
	switch {
	case token <= 0:
		return fmt.Errorf("%w: %d is not a token (Mutex.Token returns 0 to a process that does not hold the lock)", ErrStaleToken, token)
	case token < f.High:
		return fmt.Errorf("%w: token %d is older than token %d, already admitted: a later hold of the lock has written", ErrStaleToken, token, f.High)
	case f.Mutex != nil && !f.Mutex.IsCurrent(token):
		return fmt.Errorf("%w: token %d is not the current hold of lock %q: its holder released it, died holding it, or another took it since", ErrStaleToken, token, f.Mutex.Name())
	}
	f.High = token
	return nil
}
