package etcdreg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A Mutex is a named lock shared by every process of a run, kept in etcd.
// Like lockreg.Mutex, its operations can fail, so it is not a sync.Locker.
// It is safe for concurrent use; it belongs to the process, not to a
// goroutine: any goroutine of the holding process may Unlock it. The zero
// value is not usable: get one from Registry.Mutex.
type Mutex struct {
	r      *Registry
	name   string
	policy Policy

	mu   sync.Mutex
	hold *hold // this process's hold; nil when it does not hold the lock
}

// hold is this process's possession of the lock. Guarded by Mutex.mu.
type hold struct {
	rev       int64 // revision of the acquiring transaction: the owner key's CreateRevision, the holder record's ModRevision
	lease     clientv3.LeaseID
	goroutine int64
	stack     uint64
	since     time.Time
	lost      bool // the lease expired while held (keepAlive found out)
}

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.name }

// Lock acquires the lock, waiting while any goroutine of any process of the
// run holds it. It returns nil once the lock is held; ctx's error, with the
// lock unchanged, if ctx ends first; or ErrOwnerDead, with the lock held,
// under the Recover policy when the previous holder's lease expired while
// it held the lock.
//
// Under the Stall policy (the default) the lock of an expired holder is
// never taken: Lock keeps waiting (until ctx ends), and the expiry is
// recorded. While etcd cannot be reached, Lock keeps trying until ctx ends.
//
// Acquiring is one transaction: if neither the owner key nor the holder
// record exists, it puts both (the owner key bound to this process's lease),
// with an acquire event, in one revision; so no revision exists at which the
// lock is held by nobody known.
func (m *Mutex) Lock(ctx context.Context) error {
	_, err := m.lock(ctx, true)
	return err
}

// TryLock acquires the lock if it is free, and reports whether it did.
// Under the Recover policy it also takes the lock of an expired holder, and
// then returns true and ErrOwnerDead. It makes one or two round trips to
// etcd and fails if etcd cannot be reached.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	return m.lock(ctx, false)
}

// callStack is the caller's stack and its id.
type callStack struct {
	pcs []uintptr
	id  uint64
}

func captureStack(skip int) callStack {
	var buf [32]uintptr
	n := runtime.Callers(skip+1, buf[:])
	h := fnv.New64a()
	var b [8]byte
	for _, pc := range buf[:n] {
		for i := range b {
			b[i] = byte(uint64(pc) >> (8 * i))
		}
		h.Write(b[:])
	}
	id := h.Sum64()
	if id == 0 {
		id = 1
	}
	return callStack{pcs: append([]uintptr(nil), buf[:n]...), id: id}
}

// curGoid returns the calling goroutine's id, from runtime.Stack's header:
// about 15 µs, nothing beside an etcd round trip.
func curGoid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

func (m *Mutex) lock(ctx context.Context, wait bool) (bool, error) {
	r := m.r
	st := captureStack(3)
	g := curGoid()
	began := time.Now()
	var (
		waitKey   string           // our waiter record, once written
		waitLease clientv3.LeaseID // the lease it is bound to
		calls     int
		delay     = 20 * time.Millisecond
	)
	defer func() {
		if waitKey != "" {
			// Normally deleted by the acquiring transaction; this covers
			// the other exits. It goes with our lease at worst.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, _ = r.cli.Delete(dctx, waitKey)
			cancel()
		}
	}()
	hookDelay := r.opts.StuckAfter
	nextHook := began.Add(hookDelay)
	for {
		if err := ctx.Err(); err != nil {
			if waitKey != "" {
				m.event(context.WithoutCancel(ctx), EventTimeout, g, st.id)
			}
			return false, err
		}
		lease, lostCh, err := r.currentLease(ctx)
		if errors.Is(err, ErrClosed) {
			return false, err
		} else if err != nil {
			continue // ctx ended: reported above
		}
		if waitKey != "" && waitLease != lease {
			waitKey = "" // it went with the lost lease: write it again
		}
		now := time.Now()
		hrec := HolderRecord{ID: r.self, Goroutine: g, Stack: st.id, Since: now, Lease: int64(lease)}
		stackOps, written := r.stackOps(st.id, st.pcs)
		then := append([]clientv3.Op{
			clientv3.OpPut(r.k.owner(m.name), mustJSON(OwnerRecord{ID: r.self, Goroutine: g}), clientv3.WithLease(lease)),
			clientv3.OpPut(r.k.holder(m.name), mustJSON(hrec)),
			r.eventOp(EventAcquire, m.name, r.self, g, st.id, now),
		}, stackOps...)
		if waitKey != "" {
			then = append(then, clientv3.OpDelete(waitKey))
		}
		ownerVal := mustJSON(OwnerRecord{ID: r.self, Goroutine: g})
		then[0] = clientv3.OpPut(r.k.owner(m.name), ownerVal, clientv3.WithLease(lease))
		resp, err := r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(r.k.owner(m.name)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(r.k.holder(m.name)), "=", 0),
		).Then(then...).Else(
			clientv3.OpGet(r.k.owner(m.name)),
			clientv3.OpGet(r.k.holder(m.name)),
		).Commit()
		if err != nil {
			// The transaction may have been applied though its answer was
			// lost. If ctx ended, undo it, so that the lock is left as it
			// was; otherwise the next attempt finds the owner key ours.
			if ctx.Err() != nil {
				m.undo(ctx, ownerVal)
				continue
			}
			if !wait || !transient(err) {
				m.undo(ctx, ownerVal)
				return false, unreachable("lock "+strconv.Quote(m.name), err)
			}
			delay = m.pause(ctx, delay)
			continue
		}
		delay = 20 * time.Millisecond
		if resp.Succeeded {
			written()
			if waitKey != "" {
				waitKey = ""
			}
			m.setHold(&hold{rev: resp.Header.Revision, lease: lease, goroutine: g, stack: st.id, since: now})
			return true, nil
		}
		owner := resp.Responses[0].GetResponseRange().Kvs
		holder := resp.Responses[1].GetResponseRange().Kvs
		if len(owner) == 1 && len(holder) == 1 && string(owner[0].Value) == ownerVal &&
			owner[0].CreateRevision == holder[0].ModRevision && owner[0].Lease == int64(lease) && !m.held() {
			// An earlier attempt of this call was applied, its answer lost.
			written()
			m.setHold(&hold{rev: owner[0].CreateRevision, lease: lease, goroutine: g, stack: st.id, since: now})
			return true, nil
		}
		var cur *HolderRecord
		if len(holder) == 1 {
			cur = new(HolderRecord)
			if err := decode(holder[0].Value, cur); err != nil {
				return false, fmt.Errorf("etcdreg: lock %q: holder record at revision %d: %w; the run's records are damaged", m.name, holder[0].ModRevision, err)
			}
		}
		expired := len(owner) == 0 && len(holder) == 1
		if expired {
			if m.policy == Recover {
				ok, err := m.recover(ctx, holder[0].ModRevision, lease, g, st, waitKey)
				if err != nil {
					if !wait || !transient(err) {
						return false, unreachable("lock "+strconv.Quote(m.name), err)
					}
					delay = m.pause(ctx, delay)
					continue
				}
				if ok {
					waitKey = ""
					return true, ErrOwnerDead
				}
				continue // someone else recovered it first
			}
			m.noteExpired(ctx, holder[0].ModRevision, cur)
		}
		if !wait {
			return false, nil
		}
		if waitKey == "" {
			key := r.k.waiter(m.name, r.pk, g)
			ops, written := r.stackOps(st.id, st.pcs)
			ops = append(ops, clientv3.OpPut(key, mustJSON(WaiterRecord{ID: r.self, Goroutine: g, Stack: st.id, Since: began}), clientv3.WithLease(lease)),
				r.eventOp(EventWait, m.name, r.self, g, st.id, time.Now()))
			if _, err := r.cli.Txn(ctx).Then(ops...).Commit(); err == nil {
				written()
				waitKey, waitLease = key, lease
			}
		}
		// Wait for any change to the lock's keys after the revision we
		// read, so that no release can slip between the read and the
		// watch; or for the stuck hook, the lease's loss, or ctx.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := r.cli.Watch(wctx, r.k.lockDir(m.name), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		timer := time.NewTimer(time.Until(nextHook))
	waiting:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil || wr.Canceled {
					// The watch ended: etcd unreachable, or the revision
					// compacted. Try the transaction again after a pause.
					if ctx.Err() == nil && (!ok || wr.Err() != nil) {
						m.pause(ctx, 100*time.Millisecond)
					}
					break waiting
				}
				if changed(wr.Events) {
					break waiting
				}
			case <-lostCh:
				break waiting
			case <-ctx.Done():
				break waiting
			case <-timer.C:
				calls++
				waited := time.Since(began)
				m.event(ctx, EventStuck, g, st.id)
				if r.opts.OnStuck != nil {
					r.opts.OnStuck(StuckEvent{Lock: m.name, Run: r.run, Holder: cur, Expired: expired,
						Goroutine: g, Waited: waited, Calls: calls})
				}
				hookDelay = min(2*hookDelay, 5*time.Minute)
				nextHook = time.Now().Add(hookDelay)
				timer.Reset(hookDelay)
			}
		}
		timer.Stop()
		cancel()
	}
}

// changed reports whether events free the lock or change its holder: a
// delete of the owner key or holder record, or a new holder record. (A
// died/ mark is no reason to try again.)
func changed(evs []*clientv3.Event) bool {
	for _, ev := range evs {
		if bytes.HasSuffix(ev.Kv.Key, []byte("/owner")) || bytes.HasSuffix(ev.Kv.Key, []byte("/holder")) {
			return true
		}
		if ev.Type == mvccpb.DELETE {
			return true
		}
	}
	return false
}

// pause waits delay (or until ctx ends) and returns the next, longer delay.
func (m *Mutex) pause(ctx context.Context, delay time.Duration) time.Duration {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return min(2*delay, time.Second)
}

func (m *Mutex) held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hold != nil
}

// undo deletes the owner key and holder record that an acquiring
// transaction with owner value ownerVal may have written, if this process
// does not know itself the holder.
func (m *Mutex) undo(ctx context.Context, ownerVal string) {
	if m.held() {
		return
	}
	r := m.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(r.k.owner(m.name)), "=", ownerVal),
	).Then(
		clientv3.OpDelete(r.k.owner(m.name)),
		clientv3.OpDelete(r.k.holder(m.name)),
	).Commit()
}

func (m *Mutex) setHold(h *hold) {
	m.mu.Lock()
	m.hold = h
	m.mu.Unlock()
}

// recover takes the lock of an expired holder whose record is at revision
// hrev, under the Recover policy: one transaction, conditional on the owner
// key still absent and the record unchanged.
func (m *Mutex) recover(ctx context.Context, hrev int64, lease clientv3.LeaseID, g int64, st callStack, waitKey string) (bool, error) {
	r := m.r
	now := time.Now()
	stackOps, written := r.stackOps(st.id, st.pcs)
	then := append([]clientv3.Op{
		clientv3.OpPut(r.k.owner(m.name), mustJSON(OwnerRecord{ID: r.self, Goroutine: g}), clientv3.WithLease(lease)),
		clientv3.OpPut(r.k.holder(m.name), mustJSON(HolderRecord{ID: r.self, Goroutine: g, Stack: st.id, Since: now, Lease: int64(lease), Recovered: true})),
		clientv3.OpDelete(r.k.diedDir(m.name), clientv3.WithPrefix()),
		r.eventOp(EventRecovered, m.name, r.self, g, st.id, now),
	}, stackOps...)
	if waitKey != "" {
		then = append(then, clientv3.OpDelete(waitKey))
	}
	resp, err := r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(r.k.owner(m.name)), "=", 0),
		clientv3.Compare(clientv3.ModRevision(r.k.holder(m.name)), "=", hrev),
	).Then(then...).Commit()
	if err != nil {
		return false, err
	}
	if !resp.Succeeded {
		return false, nil
	}
	written()
	m.setHold(&hold{rev: resp.Header.Revision, lease: lease, goroutine: g, stack: st.id, since: now})
	return true, nil
}

// noteExpired records, once per expiry (whichever process sees it first),
// that the holder's lease expired while its record, at revision hrev, said
// it held the lock. The event names the holder.
func (m *Mutex) noteExpired(ctx context.Context, hrev int64, h *HolderRecord) {
	r := m.r
	died := r.k.died(m.name, hrev)
	ev := EventRecord{Kind: EventExpired, Lock: m.name, ID: h.ID, Goroutine: h.Goroutine, Stack: h.Stack, Time: time.Now()}
	r.mu.Lock()
	ev.Seq = r.seq
	r.seq++
	r.mu.Unlock()
	_, _ = r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(died), "=", 0),
		clientv3.Compare(clientv3.ModRevision(r.k.holder(m.name)), "=", hrev),
	).Then(
		clientv3.OpPut(died, mustJSON(ev)),
		clientv3.OpPut(r.k.event(r.pk, ev.Seq%uint64(r.opts.Events)), mustJSON(ev)),
	).Commit()
}

// event writes one event of this process about this lock, best effort.
func (m *Mutex) event(ctx context.Context, kind EventKind, g int64, stack uint64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _ = m.r.cli.Txn(ctx).Then(m.r.eventOp(kind, m.name, m.r.self, g, stack, time.Now())).Commit()
}

// Unlock releases the lock: one transaction that deletes the owner key and
// the holder record, if the owner key is still the one this process
// created, and logs a release event. It returns ErrNotHeld if this process
// does not hold the lock, and ErrLockLost if its lease expired while it
// held it (then, if nobody took the lock meanwhile, the lock is released
// all the same). If etcd cannot be reached, Unlock returns the error and
// the process still holds the lock: call Unlock again.
func (m *Mutex) Unlock(ctx context.Context) error {
	r := m.r
	m.mu.Lock()
	h := m.hold
	m.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	g := curGoid()
	resp, err := r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(r.k.owner(m.name)), "=", h.rev),
	).Then(
		clientv3.OpDelete(r.k.owner(m.name)),
		clientv3.OpDelete(r.k.holder(m.name)),
		r.eventOp(EventRelease, m.name, r.self, g, h.stack, time.Now()),
	).Else(
		clientv3.OpGet(r.k.holder(m.name)),
	).Commit()
	if err != nil {
		return unreachable("unlock "+strconv.Quote(m.name), err)
	}
	if resp.Succeeded {
		m.clearHold(h)
		return nil
	}
	// The owner key is gone (our lease expired) or is another's. If our
	// holder record is still there, nobody took the lock: release it.
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && kvs[0].ModRevision == h.rev {
		_, err := r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(r.k.owner(m.name)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(r.k.holder(m.name)), "=", h.rev),
		).Then(
			clientv3.OpDelete(r.k.holder(m.name)),
			clientv3.OpDelete(r.k.diedDir(m.name), clientv3.WithPrefix()),
			clientv3.OpDelete(r.k.lost(m.name, r.pk)),
			r.eventOp(EventLost, m.name, r.self, g, h.stack, time.Now()),
		).Commit()
		if err != nil {
			return unreachable("unlock "+strconv.Quote(m.name), err)
		}
	} else {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _ = r.cli.Txn(dctx).Then(
			clientv3.OpDelete(r.k.lost(m.name, r.pk)),
			r.eventOp(EventLost, m.name, r.self, g, h.stack, time.Now()),
		).Commit()
		cancel()
	}
	m.clearHold(h)
	return ErrLockLost
}

func (m *Mutex) clearHold(h *hold) {
	m.mu.Lock()
	if m.hold == h {
		m.hold = nil
	}
	m.mu.Unlock()
}

// ErrUnreachable means etcd could not be reached (or did not answer in
// time).
var ErrUnreachable = errors.New("etcd unreachable")

// transient reports whether err may go away by itself: etcd unreachable,
// no leader, a timeout.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	var s interface{ GRPCStatus() *status.Status }
	if errors.As(err, &s) {
		c := s.GRPCStatus().Code()
		return c == codes.Unavailable || c == codes.DeadlineExceeded
	}
	return false
}

// unreachable wraps err, saying what was being done, and marks the errors
// that mean etcd could not be reached with ErrUnreachable.
func unreachable(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if msg := explainAuth(err); msg != "" {
		return fmt.Errorf("etcdreg: %s: %s", what, msg)
	}
	if transient(err) {
		return fmt.Errorf("etcdreg: %s: %w (%v): check that the cluster runs and that the endpoints are right", what, ErrUnreachable, err)
	}
	return fmt.Errorf("etcdreg: %s: %w", what, err)
}

func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	return d.Decode(v)
}
