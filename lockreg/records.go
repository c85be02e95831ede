package lockreg

import (
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
	"github.com/lockwatch/lockwatch/procid"
)

// Holder, waiter and process records are written and read under the
// seqlock protocol of internal/rt/seqlock, whose doc argues why a copy kept
// is never torn. A writer that died mid-write leaves its record odd: readers
// give up after a few tries and report it as torn rather than wait, and the
// next writer starts from the next even value.

// claimWaiter takes a free waiter slot and fills it. It returns nil when the
// table is full even after reclaiming slots of dead processes; the wait goes
// on unrecorded (the lock's waiting count counts it instead, see lockSlow).
func (r *Registry) claimWaiter(lock uint32, goid int64, stack uint64, since int64) *arena.WaiterSlot {
	n := r.a.G.MaxWaiters
	first := uint32((uint64(goid)*0x9e3779b1 + uint64(r.pid)) % uint64(n))
	for pass := 0; pass < 2; pass++ {
		for k := uint32(0); k < n; k++ {
			w := r.a.Waiter((first + k) % n)
			owner := w.Owner.Load()
			if owner != 0 {
				if pass == 0 || !r.waiterStale(w, owner) {
					continue
				}
			}
			if !w.Owner.CompareAndSwap(owner, r.pid) {
				continue
			}
			end := w.Seq.Begin()
			seqlock.Store32(&w.Pid, r.pid)
			seqlock.Store32(&w.Proc, r.procIdx+1)
			seqlock.Store64(&w.Start, r.self.Start)
			seqlock.Store64(&w.Goid, uint64(goid))
			seqlock.Store64(&w.Stack, stack)
			seqlock.StoreInt64(&w.Since, since)
			seqlock.Store32(&w.Lock, lock+1)
			w.Seq.End(end)
			return w
		}
	}
	return nil
}

// waiterStale reports whether the waiter slot owned by pid belongs to a
// process proven dead. Only a complete record of that owner counts: right
// after a claim, the slot still holds its previous owner's start time.
func (r *Registry) waiterStale(w *arena.WaiterSlot, owner uint32) bool {
	c, ok := w.Read(1)
	if !ok || c.Pid != owner || c.Start == 0 {
		return false
	}
	st, _ := proc.Check(procid.ID{PID: int(owner), Start: c.Start})
	return st.Dead()
}

func (r *Registry) releaseWaiter(w *arena.WaiterSlot) {
	if w == nil {
		return
	}
	end := w.Seq.Begin()
	seqlock.Store32(&w.Lock, 0)
	seqlock.Store32(&w.Pid, 0)
	w.Seq.End(end)
	w.Owner.Store(0)
}
