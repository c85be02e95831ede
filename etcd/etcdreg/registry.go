package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// EnvHost names this machine in the records when set; tests and the demo use
// it to give processes of one machine distinct host identities.
const EnvHost = "LOCKWATCH_HOST"

var (
	// ErrOwnerDead is returned, with the lock held, by Lock and TryLock under
	// the Recover policy when the previous holder's lease expired while its
	// record said it held the lock: it died, or it lost its lease (a pause,
	// a partition) and may still be inside its critical section. Repair what
	// the lock protected before unlocking.
	ErrOwnerDead = lockreg.ErrOwnerDead

	// ErrNotHeld is returned by Unlock when this process does not hold the lock.
	ErrNotHeld = lockreg.ErrNotHeld

	// ErrClosed is returned by operations on a closed Registry.
	ErrClosed = lockreg.ErrClosed

	// ErrLockLost is returned by Unlock when this process's lease expired
	// while it held the lock: for some time the critical section ran
	// without the lock's protection, and another process may have taken it.
	// If nobody did, Unlock released it all the same.
	ErrLockLost = errors.New("etcdreg: lock lost: this process's lease expired while it held the lock")
)

// Policy is lockreg's: what a waiter does when the holder's lease expired
// while its record said it held the lock.
type Policy = lockreg.Policy

// The policies.
const (
	PolicyDefault = lockreg.PolicyDefault
	Stall         = lockreg.Stall
	Recover       = lockreg.Recover
)

// Options configure a Registry. The zero value gives the defaults.
type Options struct {
	// Host names this machine in every record. Default: $LOCKWATCH_HOST,
	// else the host name. It must not contain '/'.
	Host string

	// Role names this process's part in the run (e.g. "worker").
	Role string

	// TTL of the process's lease, rounded up to whole seconds; default 10s.
	// A holder that dies keeps its locks this long at most; a holder
	// that cannot reach etcd for this long loses them. etcd raises TTLs
	// below its minimum (1.5 election timeouts, 2s by default). The lease
	// is renewed every third of the TTL; a hold's Mutex.Done closes when a
	// tenth of the TTL is left, by this process's clock, since the last
	// renewal was sent (etcd counts from when it received it, later).
	TTL time.Duration

	// Policy for an expired holder; default Stall.
	Policy Policy

	// StuckAfter is how long an acquire waits before OnStuck is called;
	// further calls follow at doubling intervals, at most 5 minutes apart.
	// Default 10s.
	StuckAfter time.Duration

	// OnStuck, if set, is called from the waiting goroutine when an acquire
	// has waited StuckAfter, and again with backoff while it still waits.
	OnStuck func(StuckEvent)

	// Events is the size of this process's event ring in etcd; default 256.
	Events int
}

func (o *Options) setDefaults() error {
	if o.Host == "" {
		o.Host = os.Getenv(EnvHost)
	}
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("etcdreg: no host name (%v): set Options.Host or $%s", err, EnvHost)
		}
		o.Host = h
	}
	if strings.ContainsRune(o.Host, '/') {
		return fmt.Errorf("etcdreg: host %q contains '/': give a name without it", o.Host)
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.Policy == PolicyDefault {
		o.Policy = Stall
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10 * time.Second
	}
	if o.Events <= 0 {
		o.Events = 256
	}
	return nil
}

// StuckEvent describes an acquire that has waited too long. It is passed to
// Options.OnStuck.
type StuckEvent struct {
	Lock string // the lock's name
	Run  string // the run

	// Holder is the holder record as read now; nil when nobody holds it.
	Holder *HolderRecord
	// Expired is set when the holder's lease expired while its record said
	// it held the lock.
	Expired bool

	Goroutine int64         // the waiting goroutine
	Waited    time.Duration // how long it has waited so far
	Calls     int           // 1 for the first call of this wait, then 2, 3...
}

// A Registry is this process's membership of a run kept in etcd: its
// process record and lease, its stack dictionary and event ring, and the
// responder that answers stack requests. It is safe for concurrent use.
type Registry struct {
	cli  *clientv3.Client
	kv   pb.KVClient // on cli's connection: Registry.txn
	run  string
	k    keys
	opts Options
	self procid.ID
	pk   string // procKey(self)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	lease    clientv3.LeaseID // 0 while a lost lease is being replaced
	leaseOK  chan struct{}    // closed when lease is valid
	leaseGen uint64           // incremented on each new lease
	lostCh   chan struct{}    // closed when the current lease is lost
	// leaseDone is closed when the current lease can no longer be counted
	// on (doubted): the holds' Done.
	leaseDone chan struct{}
	doubted   bool
	mutexes   map[string]*Mutex
	// The call sites of Lock seen, by the hash of their PCs: each has a
	// small id (lastStackID), which names its frames at P/stack/PROC/ID
	// and which its records carry.
	stacks map[uint64]*callSite
	seq    uint64 // next event sequence number
	closed bool

	// Events put off (releases): a later release carries them in its own
	// transaction once the oldest has waited carryAfter, or, if none comes
	// within flushAfter, a transaction of their own writes them; either
	// way as one batch record.
	later     []EventRecord
	laterAt   time.Time // when the oldest was put off
	batchSeq  uint64    // next batch number
	laterWake chan struct{}
}

// How long a put-off event waits: for a release to carry it, then for a
// transaction of its own. A process killed loses at most flushAfter of
// its release events (its holds are in its shadows, not its events).
const (
	carryAfter = 50 * time.Millisecond
	flushAfter = 500 * time.Millisecond
	maxLater   = 4096 // past this, the oldest put-off events are dropped
	maxBatch   = 256  // events per batch record
)

// Open joins run in the etcd cluster that cli talks to: it grants this
// process's lease, writes its process record and starts keeping the lease
// alive. Close leaves the run.
func Open(ctx context.Context, cli *clientv3.Client, run string, opts Options) (*Registry, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	self := procid.Self()
	self.Host = opts.Host
	r := &Registry{cli: cli, kv: pb.NewKVClient(cli.ActiveConnection()), run: run, k: keys{p}, opts: opts, self: self, pk: procKey(self),
		mutexes: make(map[string]*Mutex), stacks: make(map[uint64]*callSite), laterWake: make(chan struct{}, 1)}
	sent := time.Now()
	lease, err := r.grant(ctx)
	if err != nil {
		return nil, err
	}
	meta := mustJSON(RunRecord{Format: Format, Created: time.Now()})
	cmd := ""
	if len(os.Args) > 0 {
		cmd = strings.Join(os.Args, " ")
		if len(cmd) > 256 {
			cmd = cmd[:256]
		}
	}
	rec := ProcessRecord{ID: self, Role: opts.Role, Command: cmd, Lease: int64(lease), TTL: ttlSeconds(opts.TTL), Registered: time.Now()}
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(r.k.meta()), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(r.k.meta(), meta)}, nil),
		clientv3.OpPut(r.k.proc(r.pk), mustJSON(rec)),
		clientv3.OpPut(r.k.alive(r.pk), fmt.Sprintf("%x", int64(lease)), clientv3.WithLease(lease)),
	).Commit(); err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(ctx), lease)
		return nil, unreachable("join run "+run, err)
	}
	r.lease = lease
	r.leaseOK = make(chan struct{})
	close(r.leaseOK)
	r.lostCh = make(chan struct{})
	r.leaseDone = make(chan struct{})
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(4)
	go r.flushLater()
	go r.keepAlive(lease, sent.Add(time.Duration(ttlSeconds(opts.TTL))*time.Second))
	go r.answerStacks()
	go func() {
		defer r.wg.Done()
		_ = r.pruneEnded(r.ctx)
	}()
	return r, nil
}

func ttlSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

func (r *Registry) grant(ctx context.Context) (clientv3.LeaseID, error) {
	g, err := r.cli.Grant(ctx, ttlSeconds(r.opts.TTL))
	if err != nil {
		return 0, unreachable("grant a lease", err)
	}
	return g.ID, nil
}

// ID returns this process's identity in the run, host included.
func (r *Registry) ID() procid.ID { return r.self }

// Run returns the run's name.
func (r *Registry) Run() string { return r.run }

// Lease returns the current lease (0 while a lost one is being replaced).
func (r *Registry) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Mutex returns the lock called name. Every process of the run that asks
// for the same name gets the same lock; in one process, the same *Mutex.
func (r *Registry) Mutex(name string) (*Mutex, error) {
	if name == "" {
		return nil, errors.New("etcdreg: empty lock name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if m, ok := r.mutexes[name]; ok {
		return m, nil
	}
	m := &Mutex{r: r, name: name, policy: r.opts.Policy, lockDir: r.k.lockDir(name), shadowDir: r.k.shadowDir(name)}
	m.free = []*pb.Compare{
		createdAt([]byte(m.lockDir), prefixEnd(m.lockDir), 0),
		createdAt([]byte(m.shadowDir), prefixEnd(m.shadowDir), 0),
	}
	r.mutexes[name] = m
	return m, nil
}

// currentLease returns the valid lease, the channel closed when it is
// lost and its Done channel, waiting while a lost lease is replaced.
func (r *Registry) currentLease(ctx context.Context) (lease clientv3.LeaseID, lost, done <-chan struct{}, err error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return 0, nil, nil, ErrClosed
		}
		lease, ok, lost, done := r.lease, r.leaseOK, r.lostCh, r.leaseDone
		r.mu.Unlock()
		if lease != 0 {
			return lease, lost, done, nil
		}
		select {
		case <-ok:
		case <-ctx.Done():
			return 0, nil, nil, ctx.Err()
		}
	}
}

// nextSeq takes the next event sequence number.
func (r *Registry) nextSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := r.seq
	r.seq++
	return seq
}

// keepAlive keeps lease alive until Close: a renewal (KeepAliveOnce) every
// third of the TTL, each giving a deadline by this process's own clock: the
// time the renewal was sent plus the TTL etcd granted (etcd counts the TTL
// from when it received it, later). When a tenth of the TTL is left before
// the deadline without a renewal, the lease's Done channel closes: the
// holds under it can no longer be counted on. When etcd says the lease is
// gone (it expired: this process was paused, or cut off, for longer than
// its TTL), it grants a new one, writes the process record again, and for
// each lock it held writes a lost record: it may still be inside its
// critical section, without the lock.
func (r *Registry) keepAlive(lease clientv3.LeaseID, deadline time.Time) {
	defer r.wg.Done()
	ttl := time.Duration(ttlSeconds(r.opts.TTL)) * time.Second
	margin := ttl / 10
	doubt := time.NewTimer(time.Until(deadline.Add(-margin)))
	defer doubt.Stop()
	every := ttl / 3
	next := time.Now().Add(every)
	ka := &renewer{cli: r.cli, ctx: r.ctx}
	defer ka.close()
	delay := 50 * time.Millisecond
	for {
		wake := time.NewTimer(time.Until(next))
		select {
		case <-r.ctx.Done():
			wake.Stop()
			return
		case <-doubt.C:
			wake.Stop()
			r.doubtLease(lease)
			continue
		case <-wake.C:
		}
		sent := time.Now()
		ttlLeft, err := ka.renew(lease, max(every, time.Second))
		switch {
		case r.ctx.Err() != nil:
			return
		case err == nil:
			deadline = sent.Add(time.Duration(ttlLeft) * time.Second)
			doubt.Reset(time.Until(deadline.Add(-margin)))
			r.trustLease(lease)
			next, delay = sent.Add(every), 50*time.Millisecond
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			r.doubtLease(lease)
			lease, deadline = r.replaceLease(lease)
			if lease == 0 {
				return
			}
			doubt.Reset(time.Until(deadline.Add(-margin)))
			next = time.Now().Add(every)
		default:
			// etcd unreachable, or no leader: try again soon. etcd extends
			// every lease when it restarts or elects a leader, so an
			// outage alone loses nothing; the deadline says until when
			// the lease is sure to live.
			next = time.Now().Add(delay)
			delay = min(2*delay, time.Second)
		}
	}
}

// renewer renews leases on one keep-alive stream of its own, one request
// at a time, so that each answer is known to be for the request sent at a
// known time. (clientv3's KeepAliveOnce opens a stream per call, and each
// stream authenticates again when etcd's auth is on.)
type renewer struct {
	cli    *clientv3.Client
	ctx    context.Context
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
}

// renew sends one keep-alive for lease and waits for its answer, at most
// timeout; it returns the TTL etcd granted, or rpctypes.ErrLeaseNotFound.
// A stream that fails or times out is dropped, so no late answer is ever
// taken for a later request.
func (k *renewer) renew(lease clientv3.LeaseID, timeout time.Duration) (int64, error) {
	if k.stream == nil {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(k.ctx))
		s, err := pb.NewLeaseClient(k.cli.ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			cancel()
			return 0, err
		}
		k.stream, k.cancel = s, cancel
	}
	t := time.AfterFunc(timeout, k.cancel)
	defer t.Stop()
	err := k.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(lease)})
	var resp *pb.LeaseKeepAliveResponse
	if err == nil {
		resp, err = k.stream.Recv()
	}
	if err != nil {
		k.close()
		return 0, err
	}
	if resp.TTL <= 0 {
		return 0, rpctypes.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

func (k *renewer) close() {
	if k.cancel != nil {
		k.cancel()
	}
	k.stream, k.cancel = nil, nil
}

// doubtLease closes lease's Done channel, if it is still the current one.
func (r *Registry) doubtLease(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease == lease && !r.doubted {
		r.doubted = true
		close(r.leaseDone)
	}
}

// trustLease gives lease a new Done channel after a renewal, if the last
// one was closed: holds taken from now on are sure again (those taken
// before keep their closed channel: they were told).
func (r *Registry) trustLease(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease == lease && r.doubted {
		r.doubted = false
		r.leaseDone = make(chan struct{})
	}
}

// replaceLease handles the loss of lease; it returns the new lease and its
// deadline, or 0 at Close.
func (r *Registry) replaceLease(old clientv3.LeaseID) (clientv3.LeaseID, time.Time) {
	r.mu.Lock()
	r.lease = 0
	r.leaseOK = make(chan struct{})
	close(r.lostCh)
	var held []*Mutex
	for _, m := range r.mutexes {
		held = append(held, m)
	}
	r.mu.Unlock()
	noticed := time.Now()

	var lease clientv3.LeaseID
	var deadline time.Time
	delay := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		sent := time.Now()
		l, err := r.grant(ctx)
		cancel()
		if err == nil {
			lease, deadline = l, sent.Add(time.Duration(ttlSeconds(r.opts.TTL))*time.Second)
			break
		}
		select {
		case <-time.After(delay):
		case <-r.ctx.Done():
			return 0, time.Time{}
		}
		delay = min(2*delay, time.Second)
	}

	ops := []clientv3.Op{
		clientv3.OpPut(r.k.alive(r.pk), fmt.Sprintf("%x", int64(lease)), clientv3.WithLease(lease)),
	}
	for _, m := range held {
		m.mu.Lock()
		if h := m.hold; h != nil && h.lease == old {
			h.lost = true
			// Unless the Recover waiter that took the lock wrote it
			// already (naming itself).
			lost := r.k.lost(m.name, r.pk)
			ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(lost), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(lost, mustJSON(LostRecord{
					ID: r.self, Goroutine: h.goroutine, Stack: h.stack, Since: h.since,
					Lease: int64(old), Noticed: noticed, HolderRev: h.rev}))}, nil))
		}
		m.mu.Unlock()
	}
	ops = append(ops, r.eventOpSeq(r.nextSeq(), EventRecord{Kind: EventLeaseLost, ID: r.self, Time: noticed}))
	rec := ProcessRecord{ID: r.self, Role: r.opts.Role, Lease: int64(lease), TTL: ttlSeconds(r.opts.TTL), Registered: noticed}
	// Keep the first registration time and command.
	if resp, err := r.cli.Get(r.ctx, r.k.proc(r.pk)); err == nil && len(resp.Kvs) == 1 {
		var old ProcessRecord
		if decode(resp.Kvs[0].Value, &old) == nil {
			old.Lease = int64(lease)
			rec = old
		}
	}
	ops = append(ops, clientv3.OpPut(r.k.proc(r.pk), mustJSON(rec)))
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		_, err := r.cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err == nil || r.ctx.Err() != nil {
			break
		}
		time.Sleep(delay) // etcd unreachable: retry; the lease may expire meanwhile, then keepAlive replaces it again
	}
	r.mu.Lock()
	r.lease = lease
	r.leaseGen++
	// A process that joins meanwhile may have pruned this one's records
	// (its lease was gone): write its stacks again as they are used,
	// under the same ids.
	for _, cs := range r.stacks {
		cs.written = false
	}
	r.lostCh = make(chan struct{})
	r.leaseDone, r.doubted = make(chan struct{}), false
	close(r.leaseOK)
	r.mu.Unlock()
	return lease, deadline
}

// Close leaves the run: it revokes the lease (which frees every lock this
// process holds, and withdraws its waiting contenders) and stops the
// background goroutines; then it removes its records, so that a run of any
// number of process lifetimes stays bounded: its event ring, stacks,
// stack request and answer, and its process record. A lock it still holds
// stays with its shadow record, with its process record (marked exited)
// and the stacks it names: it left holding the lock, which the diagnosis
// shows. It does not close the client.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	lease := r.lease
	keep := map[uint64]bool{} // stacks named by held locks
	for _, m := range r.mutexes {
		if h := m.curHold(); h != nil {
			keep[h.stack] = true
		}
	}
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	r.cancel()
	if lease != 0 {
		if _, err := r.cli.Revoke(ctx, lease); err != nil {
			errs = append(errs, err)
		}
	}
	r.wg.Wait()
	ops := []clientv3.Op{
		clientv3.OpDelete(r.k.p+"event/"+r.pk+"/", clientv3.WithPrefix()),
		clientv3.OpDelete(r.k.req(r.pk)),
		clientv3.OpDelete(r.k.ans(r.pk)),
	}
	if len(keep) == 0 {
		ops = append(ops, clientv3.OpDelete(r.k.p+"stack/"+r.pk+"/", clientv3.WithPrefix()), clientv3.OpDelete(r.k.proc(r.pk)))
	} else {
		r.mu.Lock()
		for _, cs := range r.stacks {
			if !keep[cs.id] {
				ops = append(ops, clientv3.OpDelete(r.k.stack(r.pk, cs.id)))
			}
		}
		r.mu.Unlock()
		if resp, err := r.cli.Get(ctx, r.k.proc(r.pk)); err == nil && len(resp.Kvs) == 1 {
			var rec ProcessRecord
			if decode(resp.Kvs[0].Value, &rec) == nil {
				rec.Exited = time.Now()
				ops = append(ops, clientv3.OpPut(r.k.proc(r.pk), mustJSON(rec)))
			}
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	for len(ops) > 0 { // etcd takes at most 128 operations a transaction
		n := min(len(ops), 100)
		if _, err := r.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			errs = append(errs, err)
			break
		}
		ops = ops[n:]
	}
	// Waiting Locks find their keys gone, withdraw their shadows, and
	// return ErrClosed.
	r.mu.Lock()
	if r.lease != 0 {
		close(r.lostCh)
		r.lease = 0
	}
	r.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return unreachable("leave run "+r.run, err)
	}
	return nil
}

// pruneEnded removes the records of the run's processes that ended
// without Close (killed, or crashed): those whose lease is gone and that no
// lock record names (no shadow of a lock they hold or held, no lost
// record): their process record, event ring, stacks and stack request.
// Open calls it, so that a run of any number of lifetimes stays bounded.
// A process whose lease expired while it lives (paused, cut off) writes its
// records again when it gets a new lease.
func (r *Registry) pruneEnded(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.k.p+"proc/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(MaxKeys)),
		clientv3.OpGet(r.k.p+"alive/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(MaxKeys)),
		clientv3.OpGet(r.k.p+"hold/", clientv3.WithPrefix(), clientv3.WithLimit(MaxKeys)),
		clientv3.OpGet(r.k.p+"lost/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(MaxKeys)),
	).Commit()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		keep[strings.TrimPrefix(string(kv.Key), r.k.p+"alive/")] = true
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		var h HolderRecord
		if decodeHolder(kv.Value, &h) == nil {
			keep[procKey(h.ID)] = true
		}
	}
	for _, kv := range resp.Responses[3].GetResponseRange().Kvs {
		keep[string(kv.Key[strings.LastIndexByte(string(kv.Key), '/')+1:])] = true
	}
	var ops []clientv3.Op
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		pk := strings.TrimPrefix(string(kv.Key), r.k.p+"proc/")
		if keep[pk] || pk == r.pk {
			continue
		}
		ops = append(ops,
			clientv3.OpDelete(r.k.proc(pk)),
			clientv3.OpDelete(r.k.p+"event/"+pk+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(r.k.p+"stack/"+pk+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(r.k.req(pk)))
	}
	for len(ops) > 0 { // etcd takes at most 128 operations a transaction
		n := min(len(ops), 100)
		if _, err := r.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// eventOpSeq returns the Put of event ev with sequence number seq into
// this process's ring.
func (r *Registry) eventOpSeq(seq uint64, ev EventRecord) clientv3.Op {
	ev.Seq = seq
	return clientv3.OpPut(r.k.event(r.pk, seq%uint64(r.opts.Events)), mustJSON(ev))
}

// putOff takes ev (with the revision it happened at) to be written later.
func (r *Registry) putOff(ev EventRecord) {
	r.mu.Lock()
	ev.Seq = r.seq
	r.seq++
	if len(r.later) == 0 {
		r.laterAt = time.Now()
	}
	if len(r.later) >= maxLater {
		r.later = r.later[1:]
	}
	r.later = append(r.later, ev)
	r.mu.Unlock()
	select {
	case r.laterWake <- struct{}{}:
	default:
	}
}

// carry returns the put-off events for a transaction to carry, if the
// oldest has waited carryAfter (or all if force), and the Puts of their
// batch records; give them back with putBack if it is not applied.
func (r *Registry) carry(force bool) ([]*pb.RequestOp, []EventRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.later) == 0 || !force && time.Since(r.laterAt) < carryAfter {
		return nil, nil
	}
	evs := r.later
	r.later = nil
	var ops []*pb.RequestOp
	nb := uint64(max(1, r.opts.Events/8))
	for rest := evs; len(rest) > 0; {
		n := min(len(rest), maxBatch)
		ops = append(ops, putReq([]byte(r.k.batch(r.pk, r.batchSeq%nb)), encodeBatch(r.self, rest[:n]), 0, false))
		r.batchSeq++
		rest = rest[n:]
	}
	return ops, evs
}

// putBack gives back events that carry took, for a transaction that was
// not applied (or whose answer was lost: a reader drops an event seen
// twice, by its process and Seq).
func (r *Registry) putBack(evs []EventRecord) {
	if len(evs) == 0 {
		return
	}
	r.mu.Lock()
	if len(r.later) == 0 {
		r.laterAt = time.Now()
	}
	r.later = append(evs, r.later...)
	if n := len(r.later); n > maxLater {
		r.later = r.later[n-maxLater:]
	}
	r.mu.Unlock()
}

// flushLater writes the put-off events that no release carried within
// flushAfter, until Close.
func (r *Registry) flushLater() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.laterWake:
		}
		for {
			r.mu.Lock()
			n, at := len(r.later), r.laterAt
			r.mu.Unlock()
			if n == 0 {
				break
			}
			t := time.NewTimer(time.Until(at.Add(flushAfter)))
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			r.mu.Lock()
			due := len(r.later) > 0 && time.Since(r.laterAt) >= flushAfter
			r.mu.Unlock()
			if !due {
				continue // carried meanwhile (or newer ones came)
			}
			ops, evs := r.carry(true)
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			_, err := r.txn(ctx, &pb.TxnRequest{Success: ops})
			cancel()
			if err != nil {
				r.putBack(evs)
				if r.ctx.Err() != nil {
					return
				}
			}
		}
	}
}

// lastStackID is the last call-site id given in this process. The ids
// come from this one counter, never from a Registry's own: P/stack/PROC/ID
// names the process, not the Registry, so two Registries of one process
// (at once, or one after another in the same run) must never give one id
// to two call sites. An id is never given twice in a process.
var lastStackID atomic.Uint64

// callSite is a call site of Lock: its id, and whether a transaction
// wrote its frames (P/stack/PROC/ID). Guarded by Registry.mu.
type callSite struct {
	id      uint64
	written bool
}

// stackOps returns the id of the call site whose PCs (pcs) hash to hash,
// numbering it the first time it is seen, and the Put of its frames if no
// transaction has written them yet; written is called once one has. A
// small id takes a byte in each record that names it, where the hash
// would take ten.
func (r *Registry) stackOps(hash uint64, pcs []uintptr) (id uint64, ops []*pb.RequestOp, written func()) {
	r.mu.Lock()
	cs := r.stacks[hash]
	if cs == nil {
		cs = &callSite{id: lastStackID.Add(1)}
		r.stacks[hash] = cs
	}
	id, done := cs.id, cs.written
	r.mu.Unlock()
	if done {
		return id, nil, func() {}
	}
	frames := ownFrames(stackdump.FramesOf(pcs))
	return id, []*pb.RequestOp{putReq([]byte(r.k.stack(r.pk, id)), []byte(mustJSON(stackValue{Frames: frames})), 0, false)}, func() {
		r.mu.Lock()
		cs.written = true
		r.mu.Unlock()
	}
}

// answerStacks serves stack requests: a reader puts P/req/PROC, and this
// process answers with its goroutine dump in P/ans/PROC, bound to its
// lease, cut at maxValue bytes. No port is opened: etcd, and its access
// control, are the only way in.
func (r *Registry) answerStacks() {
	defer r.wg.Done()
	key := r.k.req(r.pk)
	for r.ctx.Err() == nil {
		wch := r.cli.Watch(clientv3.WithRequireLeader(r.ctx), key)
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				r.answer(string(ev.Kv.Value))
			}
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(200 * time.Millisecond): // the watch ended (etcd unreachable): watch again
		}
	}
}

func (r *Registry) answer(request string) {
	if len(request) > 64 {
		return
	}
	// The traceback of every goroutine, of which at most maxValue bytes
	// are sent (a truncated dump is still an answer).
	dump := make([]byte, maxValue+1)
	dump = dump[:runtime.Stack(dump, true)]
	a := answer{Request: request}
	if len(dump) > maxValue {
		cut := strings.LastIndex(string(dump[:maxValue]), "\n\ngoroutine ")
		if cut < 0 {
			cut = maxValue
		}
		dump, a.Truncated = dump[:cut], true
	}
	a.Dump = string(dump)
	lease, _, _, err := r.currentLease(r.ctx)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	_, _ = r.cli.Put(ctx, r.k.ans(r.pk), mustJSON(a), clientv3.WithLease(lease))
}
