package etcdreg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// A Mutex is a named lock shared by every process of a run, kept in etcd
// with the layout of etcd's own lock (client/v3/concurrency.Mutex, and so
// `etcdctl lock`): a key per contender under the prefix Prefix returns,
// bound to the contender's lease; the owner is the key with the lowest
// create revision. So a concurrency.Mutex or `etcdctl lock` on that prefix
// and this Mutex exclude each other, both ways. Waiters queue in order, each
// watching only the key just before its own: one wake per release.
//
// Like lockreg.Mutex, its operations can fail, so it is not a sync.Locker.
// It is safe for concurrent use; it belongs to the process, not to a
// goroutine: any goroutine of the holding process may Unlock it. The zero
// value is not usable: get one from Registry.Mutex.
type Mutex struct {
	r      *Registry
	name   string
	policy Policy
	// The lock's key prefixes, made once: its contenders', its shadows'.
	lockDir, shadowDir string
	// free is Lock's comparison: no contender key, no shadow.
	free []*pb.Compare

	mu   sync.Mutex
	hold *hold // this process's hold; nil when it does not hold the lock
	// The numbers of this process's contender keys (LEASE-N): a number
	// whose key is known deleted (released, withdrawn) is given back and
	// taken again, so that a process taking the lock again and again
	// writes one key, not a new one per call: etcd keeps every deleted key
	// name in its index until compaction, and each read of the lock's
	// prefix walks them. A number is given back only if no request that
	// names its key ever failed (see doubt): such a request may still
	// reach etcd, and must find no later hold under the name.
	slotLease clientv3.LeaseID
	freeSlots []uint64
	slots     uint64
}

// takeSlot returns a contender key number for a Lock call under lease.
func (m *Mutex) takeSlot(lease clientv3.LeaseID) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slotLease != lease {
		// A new lease names new keys: every number is free.
		m.slotLease, m.freeSlots, m.slots = lease, m.freeSlots[:0], 0
	}
	if n := len(m.freeSlots); n > 0 {
		s := m.freeSlots[n-1]
		m.freeSlots = m.freeSlots[:n-1]
		return s
	}
	m.slots++
	return m.slots
}

// putSlot gives back number slot under lease, whose key is known deleted.
func (m *Mutex) putSlot(lease clientv3.LeaseID, slot uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slotLease == lease {
		m.freeSlots = append(m.freeSlots, slot)
	}
}

// hold is this process's possession of the lock. Guarded by Mutex.mu.
type hold struct {
	key, shadow string
	slot        uint64
	rev         int64 // the contender key's create revision: the fencing token
	acqRev      int64 // the revision at which it became the owner
	lease       clientv3.LeaseID
	goroutine   int64
	stack       uint64
	since       time.Time // when it became the owner
	waited      time.Time // when it began to wait, if it had to
	recovered   bool      // taken from an expired holder: its acquire was logged (recovered)
	done        <-chan struct{}
	lost        bool // the lease expired while held (keepAlive found out)
	// doubt is set once a request that writes or deletes the key without
	// comparing its create revision (its queueing put, an Unlock's delete)
	// failed: it may have been applied, or may still be in flight and be
	// applied later. The key's number is then never given back.
	doubt bool
	// releasing is set while an Unlock of this hold is under way: another
	// Unlock meanwhile finds the lock not held. Unlock compares nothing in
	// etcd, so two at once could otherwise release, after the first, the
	// next hold of this process, which takes the same key name again.
	releasing bool
	// next is the contender queued just after this one when it took the
	// lock, if it was etcdreg's: the release marks its shadow Held.
	next *successor
}

// successor is the contender next in the queue behind a hold: the release
// that makes it the owner marks its shadow Held in the same transaction,
// if its key and its shadow are unchanged (it has not withdrawn, expired or
// stalled), so that it need not write the mark itself.
type successor struct {
	key, shadow string
	rev         int64        // its key's create revision; its shadow's mod revision
	rec         HolderRecord // its record
}

// markOp is the release's conditional write of the successor's mark, at
// now (the successor's Acquired): only if the releasing hold's key (key,
// created at token) still stood, and the successor's key and shadow are
// as read. (The comparisons of a nested transaction are made before any of
// the transaction's writes.)
func (s *successor) markOp(now time.Time, key []byte, token int64) *pb.RequestOp {
	rec := s.rec
	rec.Held, rec.Acquired = true, now
	shadow := []byte(s.shadow)
	return txnReq([]*pb.Compare{createdAt(key, nil, token), createdAt([]byte(s.key), nil, s.rev), modifiedAt(shadow, s.rev)},
		[]*pb.RequestOp{putReq(shadow, appendHolder(nil, &rec), 0, false)}, nil)
}

// leafName is the leaf of contender key number slot under lease: the
// lease in hex, "-", the number.
func leafName(lease clientv3.LeaseID, slot uint64) string {
	var b [40]byte
	l := strconv.AppendInt(b[:0], int64(lease), 16)
	l = append(l, '-')
	return string(strconv.AppendUint(l, slot, 10))
}

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.name }

// Prefix returns the lock's key prefix, as concurrency.NewMutex and
// `etcdctl lock` take it: a concurrency.Mutex on it excludes this Mutex.
func (m *Mutex) Prefix() string { return m.r.k.lockPrefix(m.name) }

// Token returns the fencing token of this process's hold: the create
// revision of its key, which only increases from one holder to the next
// (etcd's revisions are cluster-wide); 0 when this process does not hold
// the lock. Give it to the resource the lock protects, and have the
// resource refuse a write with a token lower than one it has seen.
func (m *Mutex) Token() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		return 0
	}
	return m.hold.rev
}

// IsOwner returns the comparison that holds in an etcd transaction while
// this process still holds the lock (as concurrency.Mutex.IsOwner): a write
// under If(m.IsOwner()) is refused once the hold is gone, whatever the
// writer's clock says. Without a hold it never holds.
func (m *Mutex) IsOwner() clientv3.Cmp {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		return clientv3.Compare(clientv3.CreateRevision(m.r.k.lockDir(m.name)+"-"), "=", -1)
	}
	return clientv3.Compare(clientv3.CreateRevision(m.hold.key), "=", m.hold.rev)
}

// Done returns a channel that is closed when this process's hold can no
// longer be counted on: its lease is known to be gone, or it could not be
// renewed in time to be sure it outlives the next tenth of its TTL, by
// this process's own clock (see Options.TTL). A critical section that must
// not run without the lock selects on it and stops; Unlock then says
// whether the lock was really lost (ErrLockLost). Without a hold, the
// channel is closed.
func (m *Mutex) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		return closedChan
	}
	return m.hold.done
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Lock acquires the lock, waiting in order behind every contender queued
// before it, whatever takes it (etcdreg, concurrency.Mutex, etcdctl lock).
// It returns nil once the lock is held; ctx's error, with the lock
// unchanged, if ctx ends first; or ErrOwnerDead, with the lock held, under
// the Recover policy when the previous holder's lease expired while it held
// the lock.
//
// Under the Stall policy (the default) the lock of an expired etcdreg
// holder is not taken: Lock keeps waiting, first in the queue, until the
// expired holder releases its record (its Unlock, which returns
// ErrLockLost) or ctx ends, and the expiry is recorded. While etcd cannot
// be reached, Lock keeps trying until ctx ends.
//
// Queueing is one transaction: the contender key (bound to this process's
// lease) and its shadow record (bound to none, so that it outlives the
// lease); when the lock is taken, with a wait event.
func (m *Mutex) Lock(ctx context.Context) error {
	_, err := m.lock(ctx, true)
	return err
}

// TryLock acquires the lock if it is free, and reports whether it did.
// Under the Recover policy it also takes the lock of an expired holder, and
// then returns true and ErrOwnerDead. It makes one round trip to etcd when
// it gets a free lock, three when it does not get it (it queues, reads
// the queue, and withdraws), and fails if etcd cannot be reached.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	return m.lock(ctx, false)
}

// callStack is the stack of the caller of Lock (or TryLock) and the hash
// of its PCs (Registry.stackOps gives the call site its id).
type callStack struct {
	pcs  [32]uintptr
	n    int
	hash uint64
}

// frames returns the captured PCs, innermost first.
func (s *callStack) frames() []uintptr { return s.pcs[:s.n] }

// captureStack captures the stack from the caller of its caller (lock):
// Lock or TryLock, unless inlined into their caller; the frames written
// for it leave etcdreg's own out (ownFrames). The hash is a 64-bit
// multiply-xor hash of the PCs.
//
//go:noinline
func captureStack() callStack {
	var st callStack
	// Skip runtime.Callers, captureStack and lock.
	st.n = runtime.Callers(3, st.pcs[:])
	h := uint64(0x9e3779b97f4a7c15)
	for _, pc := range st.pcs[:st.n] {
		h = (h ^ uint64(pc)) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	st.hash = h
	return st
}

// ownFrames drops etcdreg's own frames from the top of a symbolized stack
// (Lock or TryLock, when not inlined) and the frames that say nothing:
// the compiler's go-statement wrappers and runtime.goexit.
func ownFrames(fs []stackdump.Frame) []stackdump.Frame {
	for len(fs) > 0 && (strings.HasPrefix(fs[0].Func, pkgPath+".(*Mutex).") || strings.HasPrefix(fs[0].Func, pkgPath+".captureStack")) {
		fs = fs[1:]
	}
	out := fs[:0]
	for _, f := range fs {
		if !strings.Contains(f.Func, ".gowrap") && f.Func != "runtime.goexit" {
			out = append(out, f)
		}
	}
	return out
}

const (
	pkgPath = "github.com/lockwatch/lockwatch/etcd/etcdreg"
)

// curGoid returns the calling goroutine's id.
func curGoid() int64 { return procid.Goroutine() }

// attempt is one Lock call's place in the queue.
type attempt struct {
	m           *Mutex
	leaf        string
	slot        uint64
	key, shadow string
	lease       clientv3.LeaseID
	lost        <-chan struct{} // closed when lease is lost
	done        <-chan struct{} // the lease's Done
	rec         HolderRecord
	val         []byte
	heldVal     []byte // val with Held set: the shadow of an owner
	rev         int64  // the key's create revision, once queued
	g           int64
	st          uint64 // the id of its stack
	queued      bool   // it had to wait: its acquire (or timeout) logs the wait
	doubt       bool   // a queueing put failed: see hold.doubt
	recovered   bool   // it took an expired holder's place: a recovered event was written
	stalled     bool   // its shadow says it waits behind an expired holder
	next        *successor
}

func (m *Mutex) lock(ctx context.Context, wait bool) (bool, error) {
	st := captureStack()
	g := curGoid()
	began := time.Now()
	hookDelay := m.r.opts.StuckAfter
	nextHook := began.Add(hookDelay)
	calls := 0
	for {
		a, err := m.enqueue(ctx, g, &st, began)
		if errors.Is(err, errHeld) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		got, err := a.await(ctx, wait, &nextHook, &hookDelay, &calls)
		if errors.Is(err, errRequeue) {
			continue // our lease was lost while we waited: queue again
		}
		return got, err
	}
}

// errRequeue: the attempt's key went with a lost lease.
var errRequeue = errors.New("requeue")

// enqueue puts the contender key and its shadow, in one transaction that
// also reads the first contender; an uncontended Lock ends there.
func (m *Mutex) enqueue(ctx context.Context, g int64, st *callStack, began time.Time) (*attempt, error) {
	r := m.r
	for {
		lease, lost, done, err := r.currentLease(ctx)
		if err != nil {
			return nil, err
		}
		slot := m.takeSlot(lease)
		leaf := leafName(lease, slot)
		sid, stackOps, written := r.stackOps(st.hash, st.frames())
		a := &attempt{m: m, leaf: leaf, slot: slot, key: m.lockDir + leaf, shadow: m.shadowDir + leaf,
			lease: lease, lost: lost, done: done, g: g, st: sid}
		a.rec = HolderRecord{ID: r.self, Goroutine: g, Stack: sid, Since: began, Lease: int64(lease), Policy: m.policy.String()}
		a.val = appendHolder(make([]byte, 0, 96), &a.rec)
		// The same record with Held set: its flag, the only difference.
		a.heldVal = append([]byte(nil), a.val...)
		a.heldVal[flagsAt] |= flagHeld
		delay := 20 * time.Millisecond
		for {
			// A free lock (no contender key, no shadow of an expired
			// holder) is taken with the key and its shadow marked Held, as
			// concurrency.Mutex takes it with its key: the same round trip
			// and raft proposal. Else the contender queues: its key (its
			// record: it stays if this is a retry of a transaction whose
			// answer was lost, and so does its place) and an empty shadow,
			// which says only that the key is etcdreg's: the release that
			// makes it the owner, or the contender itself, writes its
			// record there, marked Held. Its wait is logged with the event
			// that ends its hold (or its timeout); the unexecuted branch is
			// part of the proposal, so it is kept small.
			key, shadow := []byte(a.key), []byte(a.shadow)
			resp, err := r.txn(ctx, &pb.TxnRequest{Compare: m.free,
				Success: append([]*pb.RequestOp{putReq(key, a.val, lease, false), putReq(shadow, a.heldVal, 0, false)}, stackOps...),
				Failure: append([]*pb.RequestOp{putReq(key, a.val, lease, true), putReq(shadow, nil, 0, false)}, stackOps...),
			})
			if err != nil {
				// The transaction may have been applied though its answer
				// was lost: the next try finds the key ours; a caller who
				// gives up withdraws it. It may also arrive later than
				// any retry: its number is never given back.
				a.doubt = true
				if ctx.Err() != nil || !transient(err) {
					a.withdraw(ctx)
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					return nil, unreachable("lock "+strconv.Quote(m.name), err)
				}
				delay = m.pause(ctx, delay)
				continue
			}
			written()
			if resp.Succeeded {
				// Nobody queued, no expired holder: ours.
				a.rev = resp.Header.Revision
				a.hold(a.rev, a.rev, time.Now())
				return a, errHeld
			}
			a.rev = resp.Header.Revision
			if prev := resp.Responses[0].GetResponsePut().PrevKv; prev != nil {
				a.rev = prev.CreateRevision // it stood: its place is kept
			}
			a.queued = true
			return a, nil
		}
	}
}

// errHeld: enqueue took the lock at once.
var errHeld = errors.New("held")

// hold records the attempt as this process's hold of the lock.
func (a *attempt) hold(rev, acqRev int64, since time.Time) {
	h := &hold{key: a.key, shadow: a.shadow, slot: a.slot, rev: rev, acqRev: acqRev, lease: a.lease, goroutine: a.g,
		stack: a.st, since: since, recovered: a.recovered, done: a.done, next: a.next, doubt: a.doubt}
	if a.queued {
		h.waited = a.rec.Since
	}
	a.m.setHold(h)
}

// waitEvent is the attempt's wait, logged when it ends without a hold (a
// timeout) or with one whose acquire is logged apart (recovered), at the
// revision it queued.
func (a *attempt) waitEvent() EventRecord {
	return EventRecord{Kind: EventWait, Lock: a.m.name, ID: a.m.r.self, Goroutine: a.g, Stack: a.st, Time: a.rec.Since, Rev: a.rev}
}

// withdraw deletes the attempt's key and shadow (a Lock that gives up),
// unless the attempt holds the lock; once they are deleted, the key's
// number is taken again, unless a put of the attempt failed (doubt).
func (a *attempt) withdraw(ctx context.Context) {
	if h := a.m.curHold(); h != nil && h.key == a.key {
		return
	}
	r := a.m.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := r.cli.Txn(ctx).Then(clientv3.OpDelete(a.key), clientv3.OpDelete(a.shadow)).Commit(); err == nil && !a.doubt {
		a.m.putSlot(a.lease, a.slot)
	}
}

// await waits until the attempt owns the lock: until no contender key was
// created before its own, and no expired holder's shadow stands before it
// (Stall), or it took that holder's place (Recover).
func (a *attempt) await(ctx context.Context, wait bool, nextHook *time.Time, hookDelay *time.Duration, calls *int) (bool, error) {
	m, r := a.m, a.m.r
	if a.rev != 0 && m.heldBy(a.key) {
		return true, nil
	}
	giveUp := func(err error) (bool, error) {
		a.withdraw(ctx)
		if a.queued {
			m.events(context.WithoutCancel(ctx), a.waitEvent(),
				EventRecord{Kind: EventTimeout, Lock: m.name, ID: r.self, Goroutine: a.g, Stack: a.st, Time: time.Now()})
		}
		return false, err
	}
	delay := 20 * time.Millisecond
	var expiredSeen map[string]bool
	var gone *mvccpb.KeyValue // the key before ours, deleted at goneRev
	var goneRev int64
	for {
		if err := ctx.Err(); err != nil {
			return giveUp(err)
		}
		// The contender just before ours, the shadows (for expired
		// holders), and the contender just after ours (whose shadow our
		// release marks), as of one revision.
		resp, err := r.cli.Txn(ctx).Then(
			clientv3.OpGet(r.k.lockDir(m.name), append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(a.rev-1))...),
			clientv3.OpGet(r.k.shadowDir(m.name), clientv3.WithPrefix()),
			clientv3.OpGet(a.key, clientv3.WithCountOnly()),
			clientv3.OpGet(r.k.lockDir(m.name), append(clientv3.WithFirstCreate(), clientv3.WithMinCreateRev(a.rev+1))...),
		).Commit()
		if err != nil {
			if !wait || !transient(err) || ctx.Err() != nil {
				if ctx.Err() != nil {
					return giveUp(ctx.Err())
				}
				a.withdraw(ctx)
				return false, unreachable("lock "+strconv.Quote(m.name), err)
			}
			delay = m.pause(ctx, delay)
			continue
		}
		delay = 20 * time.Millisecond
		rev := resp.Header.Revision
		if resp.Responses[2].GetResponseRange().Count == 0 {
			a.withdraw(ctx) // our key went with our lease
			return false, errRequeue
		}
		prev := resp.Responses[0].GetResponseRange().Kvs
		shadows := resp.Responses[1].GetResponseRange().Kvs
		if gone != nil {
			// The key we watched was deleted: if its shadow survived, its
			// lease expired (a release deletes both).
			leaf := strings.TrimPrefix(string(gone.Key), r.k.lockDir(m.name))
			for _, sh := range shadows {
				if string(sh.Key) == r.k.shadowDir(m.name)+leaf && sh.CreateRevision == gone.CreateRevision {
					if expiredSeen == nil {
						expiredSeen = map[string]bool{}
					}
					a.classify(ctx, gone, sh, goneRev, expiredSeen)
				}
			}
			gone = nil
		}
		var expired []*mvccpb.KeyValue // expired holders' shadows before ours
		if len(prev) == 0 {
			expired = a.orphans(shadows, expiredSeen)
			if len(expired) == 0 {
				// It owns the lock: its shadow is marked a holder's while its
				// key stands, or its expiry would pass for a waiter's. The
				// release that made it the owner marked it, if it knew it
				// as its successor; else it marks it itself.
				if !a.markedBy(shadows) {
					ok, err := a.markHeld(ctx)
					if err != nil {
						if !wait || !transient(err) || ctx.Err() != nil {
							return giveUp(unreachable("lock "+strconv.Quote(m.name), err))
						}
						delay = m.pause(ctx, delay)
						continue
					}
					if !ok {
						a.withdraw(ctx) // our key went with our lease
						return false, errRequeue
					}
				}
				a.stalled = false
				a.next = a.successor(resp.Responses[3].GetResponseRange().Kvs, shadows)
				a.hold(a.rev, rev, time.Now())
				return true, nil
			}
			if m.policy == Recover {
				ok, err := a.recover(ctx, expired)
				if err != nil {
					if !wait || !transient(err) {
						a.withdraw(ctx)
						return false, unreachable("lock "+strconv.Quote(m.name), err)
					}
					delay = m.pause(ctx, delay)
					continue
				}
				if ok {
					return true, ErrOwnerDead
				}
				continue
			}
			a.stall(ctx, expired)
		}
		if !wait {
			a.withdraw(ctx)
			return false, nil
		}
		a.queued = true
		// Watch the key just before ours (or, stalled, the expired
		// holders' shadows) from the revision read, so that no change
		// slips between the read and the watch.
		var watchKey string
		var opts []clientv3.OpOption
		if len(prev) == 1 {
			watchKey = string(prev[0].Key)
		} else {
			watchKey, opts = r.k.shadowDir(m.name), []clientv3.OpOption{clientv3.WithPrefix()}
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := r.cli.Watch(wctx, watchKey, append(opts, clientv3.WithRev(rev+1), clientv3.WithFilterPut())...)
		timer := time.NewTimer(time.Until(*nextHook))
	waiting:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil || wr.Canceled {
					// The watch ended: etcd unreachable, or the revision
					// compacted. Read again after a pause.
					if ctx.Err() == nil && (!ok || wr.Err() != nil) {
						m.pause(ctx, 100*time.Millisecond)
					}
					break waiting
				}
				if len(wr.Events) == 0 {
					continue
				}
				if len(prev) == 1 {
					gone, goneRev = prev[0], wr.Events[0].Kv.ModRevision
				}
				break waiting
			case <-a.lost:
				break waiting
			case <-ctx.Done():
				break waiting
			case <-timer.C:
				*calls++
				m.event(ctx, EventStuck, a.g, a.st, 0)
				if r.opts.OnStuck != nil {
					holder, exp := a.holderNow(ctx)
					r.opts.OnStuck(StuckEvent{Lock: m.name, Run: r.run, Holder: holder, Expired: exp,
						Goroutine: a.g, Waited: time.Since(a.rec.Since), Calls: *calls})
				}
				*hookDelay = min(2**hookDelay, 5*time.Minute)
				*nextHook = time.Now().Add(*hookDelay)
				timer.Reset(*hookDelay)
			}
		}
		timer.Stop()
		cancel()
	}
}

// orphans returns the shadows created before the attempt's key whose
// contender key is gone (its lease expired) and that are not known to be
// expired waiters: the holders of record whose lease expired. Read when
// no contender key stands before ours.
func (a *attempt) orphans(shadows []*mvccpb.KeyValue, waiters map[string]bool) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for _, kv := range shadows {
		if kv.CreateRevision >= a.rev || waiters[string(kv.Key)] {
			continue
		}
		var rec HolderRecord
		if decodeHolder(kv.Value, &rec) != nil || !rec.Held {
			// A waiter that never held it: its expiry (it is gone,
			// or it would be before us) frees nothing.
			a.dropShadow(kv)
			continue
		}
		out = append(out, kv)
	}
	return out
}

// classify looks at the key just before ours, deleted at revision delRev
// while its shadow sh survived (its lease expired): if no key was created
// before it at delRev, it was the owner (an expired holder, found as an
// orphan at the front); otherwise it expired waiting, and its shadow is
// removed.
func (a *attempt) classify(ctx context.Context, prev, sh *mvccpb.KeyValue, delRev int64, waiters map[string]bool) {
	r, m := a.m.r, a.m
	resp, err := r.cli.Get(ctx, r.k.lockDir(m.name), append(clientv3.WithFirstCreate(), clientv3.WithRev(delRev), clientv3.WithMaxCreateRev(prev.CreateRevision-1))...)
	if err != nil {
		return // unknown (compacted, unreachable): an orphan at the front counts as an expired holder
	}
	if len(resp.Kvs) > 0 {
		waiters[string(sh.Key)] = true
		a.dropShadow(sh)
	}
}

// dropShadow deletes an expired waiter's shadow, if unchanged.
func (a *attempt) dropShadow(kv *mvccpb.KeyValue) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = a.m.r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(string(kv.Key))).Commit()
}

// stall marks the attempt's shadow stalled (it waits first in the queue,
// it does not hold), and records, once per expiry, that each expired
// holder's lease expired while its record said it held the lock.
func (a *attempt) stall(ctx context.Context, expired []*mvccpb.KeyValue) {
	r, m := a.m.r, a.m
	rec := a.rec
	rec.Stalled = true
	ops := []clientv3.Op{clientv3.OpPut(a.shadow, encodeHolder(&rec))}
	for _, kv := range expired {
		var h HolderRecord
		if decodeHolder(kv.Value, &h) != nil {
			continue
		}
		died := r.k.died(m.name, kv.CreateRevision)
		ev := EventRecord{Kind: EventExpired, Lock: m.name, ID: h.ID, Goroutine: h.Goroutine, Stack: h.Stack, Time: time.Now(), Token: kv.CreateRevision}
		ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(died), "=", 0),
			clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision),
		}, []clientv3.Op{clientv3.OpPut(died, mustJSON(ev)), r.eventOpSeq(r.nextSeq(), ev)}, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	a.stalled = true // even if the answer is lost: unstall is harmless
	_, _ = r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(a.key), "=", a.rev)).Then(ops...).Commit()
}

// markedBy reports whether the attempt's shadow, among shadows (read in
// the revision that found it first), is marked Held: the release that made
// it the owner marked it.
func (a *attempt) markedBy(shadows []*mvccpb.KeyValue) bool {
	for _, kv := range shadows {
		if string(kv.Key) != a.shadow {
			continue
		}
		var rec HolderRecord
		return kv.CreateRevision == a.rev && decodeHolder(kv.Value, &rec) == nil && rec.Held
	}
	return false
}

// successor returns the contender next (the first of next, read in the
// same revision as shadows) if it is etcdreg's and its shadow was never
// rewritten: the one the attempt's release makes the owner.
func (a *attempt) successor(next, shadows []*mvccpb.KeyValue) *successor {
	if len(next) != 1 {
		return nil
	}
	kv := next[0]
	leaf := strings.TrimPrefix(string(kv.Key), a.m.r.k.lockDir(a.m.name))
	shadow := a.m.r.k.shadowDir(a.m.name) + leaf
	var rec HolderRecord
	if decodeHolder(kv.Value, &rec) != nil || rec.ID.PID == 0 || rec.Held || rec.Stalled {
		return nil // not etcdreg's
	}
	for _, sh := range shadows {
		if string(sh.Key) == shadow && sh.CreateRevision == kv.CreateRevision && sh.ModRevision == kv.CreateRevision {
			return &successor{key: string(kv.Key), shadow: shadow, rev: kv.CreateRevision, rec: rec}
		}
	}
	return nil
}

// acquiredVal is the attempt's record marked Held, since now: the shadow of
// a contender that became the owner after it queued.
func (a *attempt) acquiredVal(now time.Time) string {
	rec := a.rec
	rec.Held, rec.Acquired = true, now
	return encodeHolder(&rec)
}

// markHeld writes the attempt's shadow as a holder's record (Held), if
// its key still stands: false if the key is gone (its lease expired
// before it owned the lock).
func (a *attempt) markHeld(ctx context.Context) (bool, error) {
	r := a.m.r
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(a.key), "=", a.rev)).
		Then(clientv3.OpPut(a.shadow, a.acquiredVal(time.Now()))).Commit()
	if err != nil {
		return false, err
	}
	a.stalled = false
	return resp.Succeeded, nil
}

// recover takes the lock from the expired holders whose shadows are
// expired (Recover): one transaction, conditional on our key and those
// shadows unchanged, that deletes the shadows and writes, for each, the
// lost record that says who took the lock from it, so that a reader
// reports both while the old holder may still run.
func (a *attempt) recover(ctx context.Context, expired []*mvccpb.KeyValue) (bool, error) {
	r, m := a.m.r, a.m
	now := time.Now()
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(a.key), "=", a.rev)}
	ops := []clientv3.Op{
		clientv3.OpPut(a.shadow, a.acquiredVal(now)),
		r.eventOpSeq(r.nextSeq(), EventRecord{Kind: EventRecovered, Lock: m.name, ID: r.self, Goroutine: a.g, Stack: a.st, Time: now, Token: a.rev}),
		clientv3.OpDelete(r.k.diedDir(m.name), clientv3.WithPrefix()),
	}
	if a.queued {
		ops = append(ops, r.eventOpSeq(r.nextSeq(), a.waitEvent()))
	}
	self := r.self
	for _, kv := range expired {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
		ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		var h HolderRecord
		if decodeHolder(kv.Value, &h) != nil {
			continue
		}
		ops = append(ops, clientv3.OpPut(r.k.lost(m.name, procKey(h.ID)), mustJSON(LostRecord{ID: h.ID, Goroutine: h.Goroutine,
			Stack: h.Stack, Since: h.Since, Lease: h.Lease, Noticed: now, HolderRev: kv.CreateRevision, TakenBy: &self, TakenToken: a.rev})))
	}
	resp, err := r.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	if !resp.Succeeded {
		return false, nil
	}
	a.recovered = true // the recovered event is its acquire
	a.hold(a.rev, resp.Header.Revision, now)
	return true, nil
}

// holderNow reads who holds the lock, for the stuck hook.
func (a *attempt) holderNow(ctx context.Context) (*HolderRecord, bool) {
	r, m := a.m.r, a.m
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := r.cli.Get(ctx, r.k.lockDir(m.name), clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, false
	}
	kv := resp.Kvs[0]
	if kv.CreateRevision == a.rev {
		// We are first: behind an expired holder (Stall).
		sh, err := r.cli.Get(ctx, r.k.shadowDir(m.name), clientv3.WithFirstCreate()...)
		if err == nil && len(sh.Kvs) == 1 && sh.Kvs[0].CreateRevision < a.rev {
			var h HolderRecord
			if decodeHolder(sh.Kvs[0].Value, &h) == nil && h.Held {
				return &h, true
			}
		}
		return nil, false
	}
	h, ok := DecodeHolder(kv.Value)
	if !ok {
		return &HolderRecord{Lease: kv.Lease}, false // not etcdreg's: only its lease is known
	}
	return h, false
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

func (m *Mutex) curHold() *hold {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hold
}

func (m *Mutex) heldBy(key string) bool {
	h := m.curHold()
	return h != nil && h.key == key
}

func (m *Mutex) setHold(h *hold) {
	m.mu.Lock()
	m.hold = h
	m.mu.Unlock()
}

// event writes one event of this process about this lock, best effort.
func (m *Mutex) event(ctx context.Context, kind EventKind, g int64, stack uint64, token int64) {
	m.events(ctx, EventRecord{Kind: kind, Lock: m.name, ID: m.r.self, Goroutine: g, Stack: stack, Time: time.Now(), Token: token})
}

// events writes events of this process, in one transaction, best effort.
func (m *Mutex) events(ctx context.Context, evs ...EventRecord) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r := m.r
	ops := make([]clientv3.Op, 0, len(evs))
	for _, ev := range evs {
		ops = append(ops, r.eventOpSeq(r.nextSeq(), ev))
	}
	_, _ = r.cli.Txn(ctx).Then(ops...).Commit()
}

// Unlock releases the lock: one transaction that deletes this process's
// contender key and its shadow, and logs the release (which carries the
// acquire). When the contender queued next (known when this process took
// the lock) is etcdreg's, the same transaction marks its shadow Held: the
// release makes it the owner. It returns ErrNotHeld if this process does
// not hold the lock, and ErrLockLost if its lease expired while it held it
// (then, if nobody took the lock meanwhile, its record is released all the
// same, which lets a stalled waiter take it). If etcd cannot be reached,
// Unlock returns the error and the process still holds the lock: call
// Unlock again: if the first was applied, the second finds the lease
// alive and the key gone, and returns nil.
//
// The transaction compares nothing (as concurrency.Mutex's Unlock, a
// delete): the key's name is this hold's alone (this process's lease and
// a number not taken again until the hold ends), so whether the key still
// stood (a release) or had gone with the lease (the lock was lost) is the
// count of keys its delete deleted; a comparison would cost etcd a read of
// the key's value on every release. Deleting the shadow of a lost hold is
// what releasing it does.
//
// No Unlock, however late its request reaches etcd, deletes another
// hold's key. A name (LEASE-N) is used again only by this process, under
// the same lease, after a release or withdrawal whose delete was
// answered. Every request that names the key without comparing its
// create revision is one of: the queueing put, this Unlock's delete, a
// withdrawal's delete. An Unlock is sent only for the process's current
// hold, and never while another Unlock of it is under way or after one
// succeeded (ErrNotHeld): so an Unlock answered before the name is used
// again was applied before it. An Unlock that failed (etcd unreachable,
// a timeout: it may have been applied, or may still be in flight) marks
// the hold doubtful, and so does a queueing put that failed; a doubtful
// hold's number is never given back, so no later hold of this process
// takes its name while that request may yet arrive; other processes'
// names carry their own lease. The comparisons of every other request
// (marking the shadow Held, stalling, Recover, the successor's mark)
// name the create revision, which a later hold under the same name does
// not share.
//
// A waiter whose lease expired behind this holder leaves its shadow, which
// the release does not look for (that would cost every release a read):
// the next contender that finds no key before its own deletes it.
func (m *Mutex) Unlock(ctx context.Context) error {
	return m.release(ctx, m.curHold())
}

// release is Unlock of hold h, read before: ErrNotHeld unless h is still
// this process's hold and no other Unlock of it is under way.
func (m *Mutex) release(ctx context.Context, h *hold) error {
	r := m.r
	if !m.beginRelease(h) {
		return ErrNotHeld
	}
	g := curGoid()
	now := time.Now()
	key := []byte(h.key)
	ops := []*pb.RequestOp{deleteReq(key), deleteReq([]byte(h.shadow))}
	if h.next != nil {
		ops = append(ops, h.next.markOp(now, key, h.rev))
	}
	// The release's own event is put off; this release carries those put
	// off before it, once they have waited a little (a batch record).
	carried, evs := r.carry(false)
	resp, err := r.txn(ctx, &pb.TxnRequest{Success: append(ops, carried...)})
	if err != nil {
		r.putBack(evs)
		m.endRelease(h, true)
		return unreachable("unlock "+strconv.Quote(m.name), err)
	}
	released := resp.Responses[0].GetResponseDeleteRange().GetDeleted() == 1
	if !released && h.doubt {
		// An earlier Unlock of this hold failed, and may have been
		// applied: the key is gone with the lease, or by that Unlock.
		// A lease that lives now lived all along: that Unlock released
		// the hold.
		ttl, err := r.cli.TimeToLive(ctx, h.lease)
		if err != nil {
			m.endRelease(h, false)
			return unreachable("unlock "+strconv.Quote(m.name), err)
		}
		released = ttl.TTL > 0
	}
	if released {
		m.clearHold(h)
		if !h.doubt {
			m.putSlot(h.lease, h.slot)
		}
		ev := h.endEvent(EventRelease, m.name, r.self, g, now)
		ev.Rev = resp.Header.Revision
		r.putOff(ev)
		return nil
	}
	// Our key was gone (our lease expired). If our shadow was still there,
	// nobody took the lock from us: the delete released it. Either way the
	// shadow is gone now, and with it the expiry a stalled waiter noted
	// (P/died/NAME/TOKEN).
	if _, err := r.cli.Txn(ctx).Then(
		clientv3.OpDelete(r.k.died(m.name, h.rev)),
		clientv3.OpDelete(r.k.lost(m.name, r.pk)),
		r.eventOpSeq(r.nextSeq(), h.endEvent(EventLost, m.name, r.self, g, now)),
	).Commit(); err != nil {
		m.endRelease(h, false)
		return unreachable("unlock "+strconv.Quote(m.name), err)
	}
	m.clearHold(h)
	return ErrLockLost
}

// endEvent is the event that ends hold h (a release, a lost release), by
// goroutine g at now: it carries the hold's acquire, which is not logged
// apart (one write fewer per hold), unless a recovered event logged it.
func (h *hold) endEvent(kind EventKind, lock string, id procid.ID, g int64, now time.Time) EventRecord {
	ev := EventRecord{Kind: kind, Lock: lock, ID: id, Goroutine: g, Stack: h.stack, Time: now, Token: h.rev}
	if !h.recovered {
		ev.Acquired = &AcquireRecord{Time: h.since, Goroutine: h.goroutine, Rev: h.acqRev, Waited: h.waited}
	}
	return ev
}

// beginRelease marks h releasing, if it is this process's hold and not
// being released already.
func (m *Mutex) beginRelease(h *hold) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h == nil || m.hold != h || h.releasing {
		return false
	}
	h.releasing = true
	return true
}

// endRelease undoes beginRelease: the release failed, h is still held;
// doubt says the failed request deleted h's key.
func (m *Mutex) endRelease(h *hold, doubt bool) {
	m.mu.Lock()
	h.releasing = false
	h.doubt = h.doubt || doubt
	m.mu.Unlock()
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
