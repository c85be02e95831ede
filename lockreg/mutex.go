package lockreg

import (
	"context"
	"math"
	"runtime/pprof"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// A Mutex is a named lock shared by every process of a run. Unlike
// sync.Mutex, its operations can fail (a context ends, the holder died), so
// it is not a sync.Locker. A Mutex is safe for concurrent use; it is not
// associated with a goroutine, but with a process: any goroutine of the
// holding process may Unlock it. The zero value is not usable: get one from
// Registry.Mutex.
type Mutex struct {
	r    *Registry
	s    *arena.LockSlot
	idx  uint32
	name string
	opts MutexOptions
	// The lock's event ring, located once: its header, its first holder
	// slot and the holder slots' mask (appendHeld).
	ring  *arena.RingHdr
	held0 *arena.EventSlot
	hmask uint32
}

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.name }

// Lock acquires the lock, waiting while another goroutine of any process of
// the run holds it. It returns nil once the lock is held; ctx's error, with
// the lock unchanged, if ctx ends first; or ErrOwnerDead, with the lock held,
// under the Recover policy when the previous holder died holding it.
//
// Under the Stall policy (the default) a dead holder's lock is never taken:
// Lock keeps waiting (until ctx ends), and the death is reported.
func (m *Mutex) Lock(ctx context.Context) error {
	r := m.r
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if r.opts.NoRecord {
		procPin() // see Registry.Close
		if r.closed.Load() {
			procUnpin()
			return ErrClosed
		}
		ok := m.s.Word.CompareAndSwap(0, r.pid)
		if ok {
			m.s.Holder.NextToken()
		}
		procUnpin()
		if ok {
			return nil
		}
		return m.lockSlow(ctx, 0)
	}
	// Identify and intern the stack before the CAS: outside the critical
	// section, and so that the stack is in the dictionary before any
	// record names it. A known stack is only hashed; a new one is
	// captured (internCaller, from this same frame: the same PCs).
	var stack uint64
	if record.FramePointers() {
		stack = record.CallerID() // stackID without its two calls
	} else {
		stack = stackID()
	}
	if !r.stacks.known(stack) {
		stack = r.stacks.internCaller()
	}
	goid := curGoid()
	// The clock before the pin: a stale coarse clock takes a mutex, and
	// nothing may block while pinned (TestLockregReadsClockUnpinned).
	now := coarseNow()
	procPin()
	if r.closed.Load() {
		procUnpin()
		return ErrClosed
	}
	if m.s.Word.CompareAndSwap(0, r.pid) {
		m.acquired(goid, stack, now, arena.EventAcquire)
		procUnpin()
		return nil
	}
	procUnpin()
	return m.lockSlow(ctx, stack)
}

// TryLock acquires the lock if it is free, and reports whether it did. Under
// the Recover policy it also takes a lock whose holder is proven dead, and
// then returns true and ErrOwnerDead.
func (m *Mutex) TryLock() (bool, error) {
	r := m.r
	var stack uint64
	if !r.opts.NoRecord {
		if stack = stackID(); !r.stacks.known(stack) {
			stack = r.stacks.internCaller()
		}
	}
	if !r.enter() {
		return false, ErrClosed
	}
	defer r.leave()
	if m.s.Word.CompareAndSwap(0, r.pid) {
		m.acquired(curGoid(), stack, coarseNow(), arena.EventAcquire)
		return true, nil
	}
	if m.opts.Policy != Recover {
		return false, nil
	}
	v := m.s.Word.Load()
	if v&arena.TidMask != 0 {
		if !m.checkHolder(v) {
			return false, nil
		}
		v = m.s.Word.Load()
	}
	if v&arena.OwnerDiedBit != 0 && v&arena.TidMask == 0 && m.s.Word.CompareAndSwap(v, r.pid|(v&arena.WaitersBit)) {
		m.acquired(curGoid(), stack, nanotime(), arena.EventRecovered)
		return true, ErrOwnerDead
	}
	return false, nil
}

// Unlock releases the lock. It returns ErrNotHeld if this process does not
// hold it: in particular, of two Unlocks racing to release one hold, one
// returns nil and the other ErrNotHeld, even if another process takes the
// lock in between.
//
// The release is decided by a CAS, never by a check followed by a store:
// with the record, by CAS(holder pid: ours -> 0) on the holder record, which
// a second Unlock of the same hold loses, and which can never succeed on
// another process's record (it names that process); then the word goes from
// the value seen, naming us, to 0 by CAS (a waiter may add WAITERS
// meanwhile: retry). Without the record, the word's CAS alone decides.
func (m *Mutex) Unlock() error {
	r, s := m.r, m.s
	var goid, now int64
	if !r.opts.NoRecord {
		goid = curGoid()
		now = coarseNow() // before the pin, as in Lock
	}
	procPin() // see Registry.Close
	if r.closed.Load() {
		procUnpin()
		return ErrClosed
	}
	v := s.Word.Load()
	if v&arena.TidMask != r.pid {
		procUnpin()
		return ErrNotHeld
	}
	if !r.opts.NoRecord {
		// Clear the record and log the release while still holding, so
		// that the ring orders the release before the next acquire.
		holder := int64(s.Holder.Goid.Load()) // any goroutine may Unlock: the holder's, not ours
		if !s.Holder.Pid.CompareAndSwap(r.pid, 0) {
			procUnpin()
			return ErrNotHeld
		}
		r.appendHeld(s, m.ring, m.held0, m.hmask, arena.EventRelease, goid, s.Holder.Stack.Load(), now, s.Holder.Token.Load())
		r.heldReleased(m.idx, holder) // before the word: see heldReleased
	}
	// Clearing WAITERS too: the woken waiter sets it again when it
	// acquires, for any others (see lockSlow).
	for !s.Word.CompareAndSwap(v, 0) {
		if v = s.Word.Load(); v&arena.TidMask != r.pid {
			procUnpin()
			return ErrNotHeld
		}
	}
	procUnpin()
	// After the pinned section: a syscall there would let a stop-the-world
	// proceed. Waking an address that Close has just unmapped is harmless.
	if v&arena.WaitersBit != 0 {
		futexWake(&s.Word, 1)
	}
	return nil
}

// acquired writes the holder record and the event. Called holding the lock.
// Under NoRecord no holder record is written, not even on recovery: Unlock
// would not clear it, and a stale record would name the wrong holder; a
// recovery clears the dead holder's record instead.
func (m *Mutex) acquired(goid int64, stack uint64, t int64, kind arena.EventKind) {
	r := m.r
	if kind == arena.EventRecovered {
		m.s.Noted.Store(0) // the next death is news again
	}
	if r.opts.NoRecord {
		if kind == arena.EventRecovered {
			// The dead holder's record would go on naming it as the
			// holder, with this hold's token, and, if this process
			// died too, as the dead holder: clear it.
			m.s.Holder.Clear()
		}
		token := m.s.Holder.NextToken()
		if kind != arena.EventAcquire {
			r.record(kind, m.idx, goid, stack, t, token)
		}
		return
	}
	token := m.s.Holder.Set(r.procIdx+1, r.pid, r.self.Start, goid, stack, t) // the slot is a hint: see claimSlot
	r.appendHeld(m.s, m.ring, m.held0, m.hmask, kind, goid, stack, t, token)
	r.heldAcquired(m.idx, goid, stack) // lock order (order.go)
}

// lockSlow waits for the lock. The protocol is a robust variant of Drepper's
// "mutex3": a waiter sets WAITERS in the word before it sleeps in FUTEX_WAIT
// on the value it saw, so the holder's Unlock (which swaps the word to 0)
// knows to wake one; a woken waiter acquires with WAITERS set, since others
// may still sleep. The kernel wakes one waiter too when it marks
// OWNER_DIED.
func (m *Mutex) lockSlow(ctx context.Context, stack uint64) (err error) {
	r, s := m.r, m.s
	if !r.enter() {
		return ErrClosed
	}
	defer r.leave()
	goid := curGoid()
	began := nanotime()
	// A waiter is counted by its waiter record, or, when the table is
	// full, in the lock's waiting count: so a waiter killed anywhere leaves
	// at most a record of a dead process, which clearWaiters skips.
	w := r.claimWaiter(m.idx, goid, stack, began)
	if w == nil {
		s.Waiting.Add(1)
	}
	// stopWaiting takes this goroutine out of the waiters, once. A waiter
	// that acquires calls it before it writes the holder record, so that no
	// reader sees the goroutine hold the lock and wait for it (a false
	// self-cycle); the others leave on return.
	waiting := true
	stopWaiting := func() {
		if !waiting {
			return
		}
		waiting = false
		if w != nil {
			r.releaseWaiter(w)
		} else {
			s.Waiting.Add(-1)
		}
	}
	defer func() {
		stopWaiting()
		if testHook != nil {
			testHook("waiter-released")
		}
		if err != nil && err != ErrOwnerDead {
			m.clearWaiters()
		}
	}()
	r.record(arena.EventWait, m.idx, goid, stack, began, 0)

	// Label the goroutine while it waits, so that a goroutine profile
	// (cheap, without goroutine ids) still shows who waits for what. On
	// return the goroutine gets the labels of ctx (those of pprof.Do when
	// ctx comes from it).
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels(arena.WaitLabel, m.name)))
	defer pprof.SetGoroutineLabels(ctx)

	if ctx.Done() != nil {
		// A cancelled context wakes every sleeper on the word; the others
		// re-check and sleep again. The bounded sleeps below cover the
		// instant between our ctx check and FUTEX_WAIT.
		stop := context.AfterFunc(ctx, func() { futexWake(&s.Word, math.MaxInt32) })
		defer stop()
	}
	deadline, hasDeadline := ctx.Deadline()
	nextHook := began + int64(m.opts.StuckAfter)
	hookDelay := m.opts.StuckAfter
	calls := 0
	nextCheck := int64(0)
	for {
		if r.closed.Load() {
			r.record(arena.EventTimeout, m.idx, goid, stack, nanotime(), 0)
			return ErrClosed
		}
		v := s.Word.Load()
		switch {
		case v == 0:
			if s.Word.CompareAndSwap(0, r.pid|arena.WaitersBit) {
				stopWaiting()
				m.acquired(goid, stack, nanotime(), arena.EventAcquire)
				return nil
			}
			continue
		case v&arena.TidMask == 0 && v&arena.OwnerDiedBit != 0:
			m.noteDeath()
			if m.opts.Policy == Recover {
				if s.Word.CompareAndSwap(v, r.pid|(v&arena.WaitersBit)) {
					stopWaiting()
					m.acquired(goid, stack, nanotime(), arena.EventRecovered)
					return ErrOwnerDead
				}
				continue
			}
			// Stall: sleep on the dead word like on a held one.
		}
		if v&arena.WaitersBit == 0 {
			if !s.Word.CompareAndSwap(v, v|arena.WaitersBit) {
				continue
			}
			v |= arena.WaitersBit
		}
		if err := ctx.Err(); err != nil {
			r.record(arena.EventTimeout, m.idx, goid, stack, nanotime(), 0)
			return err
		}

		now := nanotime()
		if nextCheck == 0 {
			nextCheck = now + int64(m.pollInterval(v))
		}
		until := min(nextHook, nextCheck)
		if hasDeadline {
			until = min(until, now+int64(time.Until(deadline))+1)
		}
		// Past the deadline, ctx's timer is about to fire: sleep a little
		// rather than spin until it does.
		futexWait(&s.Word, v, max(time.Duration(until-now), time.Millisecond))

		now = nanotime()
		if now >= nextCheck {
			if v&arena.TidMask != 0 {
				m.checkHolder(v)
			}
			nextCheck = now + int64(m.pollInterval(v))
		}
		if now >= nextHook {
			calls++
			r.record(arena.EventStuck, m.idx, goid, stack, now, 0)
			if m.opts.OnStuck != nil {
				m.opts.OnStuck(m.stuckEvent(goid, time.Duration(now-began), calls))
			}
			hookDelay = min(2*hookDelay, 5*time.Minute)
			nextHook = nanotime() + int64(hookDelay)
		}
	}
}

// clearWaiters is called by a waiter that gives up (its context ended, or
// the registry closed), after it released its waiter record: if no other
// goroutine waits, it clears the WAITERS bit it may have set, so that the
// lock is left as it was.
//
// Who waits is derived from the waiter records naming the lock (skipping
// those of processes proven dead) plus the lock's count of waiters without
// a record, not kept in a count that every waiter updates on its way out:
// such a count stays high for ever when a waiter is killed between freeing
// its record and decrementing it, and then the bit is never cleared and
// every Unlock makes a futex call. Now a waiter killed at any point leaves
// at most a record of a dead process.
//
// No wake-up is lost: a newcomer writes its record (or counts itself)
// before it reads the word; here the CAS that clears the bit comes before
// the look at the records. Both are sequentially consistent, so either the
// newcomer reads the cleared word (and sets the bit itself before it
// sleeps) or the look below sees it, and every sleeper is woken to look
// again.
func (m *Mutex) clearWaiters() {
	s := m.s
	if m.othersWait() {
		return
	}
	v := s.Word.Load()
	if v&arena.WaitersBit == 0 || v&^arena.WaitersBit == 0 || !s.Word.CompareAndSwap(v, v&^arena.WaitersBit) {
		return
	}
	if m.othersWait() {
		futexWake(&s.Word, math.MaxInt32)
	}
}

// othersWait reports whether any goroutine of any process may be waiting
// for the lock: a waiter record names it whose process is not proven dead,
// or a waiter without a record counts itself. The caller has released its
// own record. It reads every waiter slot: a cost paid when a wait is given
// up, never on a successful acquire.
func (m *Mutex) othersWait() bool {
	if m.s.Waiting.Load() > 0 {
		return true
	}
	r := m.r
	want := m.idx + 1
	for i := uint32(0); i < r.a.G.MaxWaiters; i++ {
		w := r.a.Waiter(i)
		owner := w.Owner.Load()
		if owner == 0 || w.Lock.Load() != want {
			continue
		}
		if owner == r.pid || !r.waiterStale(w, owner) {
			return true
		}
	}
	return false
}

// pollInterval is how often to check the liveness of the holder in word v.
func (m *Mutex) pollInterval(v uint32) time.Duration {
	if pid := v & arena.TidMask; pid != 0 && m.r.robustPID(pid) {
		return time.Second // the kernel will tell; this is a safety net
	}
	return m.r.opts.PollInterval
}

// checkHolder proves, if it can, that the holder named by word v is dead,
// and then marks the word as the kernel would: OWNER_DIED, holder bits
// cleared. It reports whether the holder is dead. A process that merely
// cannot be checked is taken for alive.
func (m *Mutex) checkHolder(v uint32) bool {
	pid := v & arena.TidMask
	var start uint64
	if h, ok := m.s.Holder.Read(arena.ReadTries); ok && h.Pid == pid {
		start = h.Start
	}
	if !m.r.status(pid, start).Dead() {
		return false
	}
	m.s.Word.CompareAndSwap(v, (v&arena.WaitersBit)|arena.OwnerDiedBit)
	return true
}

// noteDeath records, once per death, that the holder died holding the lock.
// The event names the dead holder, from its record (pid 0 when no record
// named it), not the waiter that saw it.
func (m *Mutex) noteDeath() {
	if m.s.Noted.CompareAndSwap(0, 1) {
		h, ok := m.s.Holder.Read(arena.ReadTries)
		if !ok || h.Pid == 0 {
			h = arena.HolderCopy{} // no record names the dead holder: neither its pid nor its token is known
		}
		m.r.recordAs(arena.EventOwnerDied, m.idx, h.Pid, h.Start, int64(h.Goid), h.Stack, nanotime(), h.Token)
	}
}

func (m *Mutex) stuckEvent(goid int64, waited time.Duration, calls int) StuckEvent {
	v := m.s.Word.Load()
	ev := StuckEvent{Lock: m.name, Dir: m.r.dir, OwnerDied: v&arena.OwnerDiedBit != 0,
		Goroutine: goid, Waited: waited, Calls: calls}
	h, ok := m.s.Holder.Read(arena.ReadTries)
	if ok && h.Pid != 0 && (h.Pid == v&arena.TidMask || ev.OwnerDied) {
		hd := m.r.a.HolderOf(h)
		ev.Holder = Holder{PID: hd.PID, Start: hd.Start, Goroutine: hd.Goroutine, Stack: hd.Stack, Since: hd.Since,
			ProcSlot: hd.ProcSlot, Token: int64(hd.Token)}
		ev.HolderStatus = m.r.status(h.Pid, h.Start)
	} else if pid := v & arena.TidMask; pid != 0 {
		ev.Holder = Holder{PID: int(pid)}
		ev.HolderStatus = m.r.status(pid, 0)
	}
	return ev
}
