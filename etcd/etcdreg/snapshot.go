package etcdreg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// MaxKeys bounds what Read takes from a run, so that a reader's time and
// memory stay bounded whatever the run holds.
const MaxKeys = 200_000

// A Snapshot is a run's records as of one etcd revision: read in one range
// request, so it is consistent across all keys.
type Snapshot struct {
	Run       string
	Taken     time.Time // the reader's clock
	Revision  int64     // the etcd revision read
	Truncated bool      // the run had more than MaxKeys keys; the rest were not read

	Processes []Process
	Locks     []Lock
	Waiters   []Waiter // in queue order, by token
	Lost      []Lost
	Events    []Event // by revision, oldest first

	// Bad lists records that could not be decoded, by key.
	Bad []string

	stacks map[string]map[uint64][]stackdump.Frame // by procKey
}

// Process is one process record with its lease's state.
type Process struct {
	ProcessRecord
	// Alive: its alive key exists, so etcd counts its lease as alive.
	Alive bool
	// AliveLease is the lease of its alive key (its current lease).
	AliveLease int64
}

// A Contender is one key under a lock's prefix: a holder or a waiter.
type Contender struct {
	Key   string
	Lease int64
	// Token is the key's create revision: the holder's fencing token, the
	// waiter's place in the queue.
	Token int64
	// Record is the etcdreg record the key holds; nil for a contender that
	// is not etcdreg's (a concurrency.Mutex, `etcdctl lock`, an election):
	// only its lease and revision are known.
	Record *HolderRecord
	// Value is such a contender's value (an election's proposal), cut at
	// 64 bytes.
	Value string
}

// A Lock is one lock of the run that has records: its contenders, and the
// holder of record.
type Lock struct {
	Name   string
	Prefix string // as concurrency.NewMutex and `etcdctl lock` take it

	// Holder holds the lock: the first contender, or, when Expired, the
	// etcdreg holder whose lease expired while its shadow record says it
	// holds the lock. Nil when the lock is free.
	Holder *Contender
	// Expired: the holder's lease expired (its key is gone) while its
	// shadow record, bound to no lease, still says it holds the lock.
	Expired bool
	// Next, when Expired, is the contender first in line now: a Stall
	// waiter that waits for the expired holder's record (Stalled), or one
	// that holds the lock by etcd's rule (a Recover waiter taking it, or
	// one that is not etcdreg's): then two may be inside at once.
	Next *Contender
	// Stalled: Next waits behind the expired holder; it does not hold.
	Stalled bool
	// Since is when the holder became the owner (SinceRev is that
	// revision), from its shadow marked Held: the time it queued if it was
	// first then (SinceRev its token); else the time the release that made
	// it first, or the holder itself once it found itself first, marked
	// it. Zero when unknown: a holder that is not etcdreg's, or one not
	// marked yet.
	Since    time.Time
	SinceRev int64
	// LeaseTTL is what remains of the holder's lease (-1 if unknown).
	LeaseTTL time.Duration
	// ExpiryNoted: a waiter saw the holder's lease expire and recorded it.
	ExpiryNoted bool
}

// Owner returns the contender that holds the lock by etcd's rule (the
// first key), or nil.
func (l Lock) Owner() *Contender {
	if l.Expired {
		if l.Stalled {
			return nil
		}
		return l.Next
	}
	return l.Holder
}

// Waiter is a contender waiting for a lock, and the lock.
type Waiter struct {
	Lock string
	Contender
}

// Lost is a lost record and the lock it names.
type Lost struct {
	Lock string
	LostRecord
}

// Event is an event record and the revision that wrote it (or, for an
// event written later, the revision it happened at).
type Event struct {
	EventRecord
	Revision int64
}

// Read reads run's records from etcd, in one range request (plus one lease
// query per holder). Its error wraps ErrUnreachable when etcd could not be
// reached.
func Read(ctx context.Context, cli *clientv3.Client, run string) (*Snapshot, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(MaxKeys))
	if err != nil {
		return nil, unreachable("read run "+run, err)
	}
	return build(ctx, cli, run, resp.Kvs, resp.Header.Revision, resp.More)
}

// build reads a run's records from its keys, as of revision rev.
func build(ctx context.Context, cli *clientv3.Client, run string, kvs []*mvccpb.KeyValue, rev int64, more bool) (*Snapshot, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	resp := struct{ Kvs []*mvccpb.KeyValue }{kvs}
	s := &Snapshot{Run: run, Taken: time.Now(), Revision: rev, Truncated: more,
		stacks: make(map[string]map[uint64][]stackdump.Frame)}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdreg: no run %q in etcd (no key under %s): check the run's name (lockwatch run --etcd prints it, and gives it to the program as $LOCKWATCH_ETCD_RUN) and the endpoints", run, p)
	}
	k := keys{p}
	type lockKeys struct {
		contenders []Contender
		shadows    map[string]*mvccpb.KeyValue // by leaf
		died       map[int64]bool
	}
	locks := map[string]*lockKeys{}
	lock := func(name string) *lockKeys {
		if l, ok := locks[name]; ok {
			return l
		}
		l := &lockKeys{shadows: map[string]*mvccpb.KeyValue{}, died: map[int64]bool{}}
		locks[name] = l
		return l
	}
	procs := map[string]*Process{}
	alive := map[string]int64{}
	type eventID struct {
		id  procid.ID
		seq uint64
	}
	seen := map[eventID]bool{}
	for _, kv := range resp.Kvs {
		key := string(kv.Key[len(p):])
		parts := strings.Split(key, "/")
		bad := func(err error) { s.Bad = append(s.Bad, fmt.Sprintf("%s: %v", kv.Key, err)) }
		switch {
		case parts[0] == "proc" && len(parts) == 2:
			var pr Process
			if err := decode(kv.Value, &pr.ProcessRecord); err != nil {
				bad(err)
				continue
			}
			procs[parts[1]] = &pr
		case parts[0] == "alive" && len(parts) == 2:
			alive[parts[1]] = kv.Lease
		case parts[0] == "lock" && len(parts) == 3:
			l := lock(unesc(parts[1]))
			l.contenders = append(l.contenders, contender(kv))
		case parts[0] == "hold" && len(parts) == 3:
			lock(unesc(parts[1])).shadows[parts[2]] = kv
		case parts[0] == "died" && len(parts) == 3:
			if rev, err := strconv.ParseInt(parts[2], 10, 64); err == nil {
				lock(unesc(parts[1])).died[rev] = true
			}
		case parts[0] == "lost" && len(parts) == 3:
			var lr LostRecord
			if err := decode(kv.Value, &lr); err != nil {
				bad(err)
				continue
			}
			s.Lost = append(s.Lost, Lost{Lock: unesc(parts[1]), LostRecord: lr})
			lock(unesc(parts[1]))
		case parts[0] == "stack" && len(parts) == 3:
			id, err := strconv.ParseUint(parts[2], 16, 64)
			if err != nil {
				bad(err)
				continue
			}
			var sv stackValue
			if err := decode(kv.Value, &sv); err != nil {
				bad(err)
				continue
			}
			if s.stacks[parts[1]] == nil {
				s.stacks[parts[1]] = map[uint64][]stackdump.Frame{}
			}
			s.stacks[parts[1]][id] = sv.Frames
		case parts[0] == "event" && len(parts) == 3:
			evs, err := decodeEvents(kv.Value)
			if err != nil {
				bad(err)
				continue
			}
			for _, ev := range evs {
				if seen[eventID{ev.ID, ev.Seq}] {
					continue // written twice (a transaction retried after its answer was lost)
				}
				seen[eventID{ev.ID, ev.Seq}] = true
				s.addEvent(ev, kv.ModRevision)
			}
		}
	}
	for pk, pr := range procs {
		pr.AliveLease, pr.Alive = alive[pk]
		s.Processes = append(s.Processes, *pr)
	}
	sort.Slice(s.Processes, func(i, j int) bool { return s.Processes[i].Registered.Before(s.Processes[j].Registered) })
	for name, lk := range locks {
		l, waiters := lockState(name, lk.contenders, lk.shadows)
		l.Prefix = k.lockPrefix(name)
		l.ExpiryNoted = l.Expired && lk.died[l.Holder.Token]
		s.Locks = append(s.Locks, l)
		for _, w := range waiters {
			s.Waiters = append(s.Waiters, Waiter{Lock: name, Contender: w})
		}
	}
	sort.Slice(s.Locks, func(i, j int) bool { return s.Locks[i].Name < s.Locks[j].Name })
	s.holdsAsEvents()
	sort.SliceStable(s.Events, func(i, j int) bool { return s.Events[i].Revision < s.Events[j].Revision })
	sort.Slice(s.Waiters, func(i, j int) bool { return s.Waiters[i].Token < s.Waiters[j].Token })

	// What remains of each holder's lease.
	ttls := map[int64]time.Duration{}
	for i := range s.Locks {
		l := &s.Locks[i]
		if l.Holder == nil || l.Expired || l.Holder.Lease == 0 {
			continue
		}
		d, ok := ttls[l.Holder.Lease]
		if !ok {
			d = -1
			if t, err := cli.TimeToLive(ctx, clientv3.LeaseID(l.Holder.Lease)); err == nil && t.TTL >= 0 {
				d = time.Duration(t.TTL) * time.Second
			}
			ttls[l.Holder.Lease] = d
		}
		l.LeaseTTL = d
	}
	return s, nil
}

// addEvent adds event ev, written at revision rev, with the acquire (and
// wait) it carries.
func (s *Snapshot) addEvent(ev EventRecord, rev int64) {
	e := Event{EventRecord: ev, Revision: rev}
	if ev.Rev != 0 {
		e.Revision = ev.Rev
	}
	if a := e.Acquired; a != nil {
		if !a.Waited.IsZero() {
			s.Events = append(s.Events, Event{EventRecord: EventRecord{Kind: EventWait, Lock: e.Lock, ID: e.ID,
				Goroutine: a.Goroutine, Stack: e.Stack, Time: a.Waited}, Revision: e.Token})
		}
		s.Events = append(s.Events, Event{EventRecord: EventRecord{Kind: EventAcquire, Lock: e.Lock, ID: e.ID,
			Goroutine: a.Goroutine, Stack: e.Stack, Time: a.Time, Token: e.Token}, Revision: a.Rev})
	}
	s.Events = append(s.Events, e)
}

// holdsAsEvents adds the acquire events of the holds that have not ended
// (an acquire is logged with the event that ends its hold): the current
// holders' and the lost holders', from their records; and the wait events
// of the waits that have not ended (a wait is logged with the acquire that
// ends it), the waiters' and those of the current holders that waited.
func (s *Snapshot) holdsAsEvents() {
	type wait struct {
		lock string
		id   procid.ID
		g    int64
		t    int64
	}
	waits := map[wait]bool{}
	for _, e := range s.Events {
		if e.Kind == EventWait {
			waits[wait{e.Lock, e.ID, e.Goroutine, e.Time.UnixNano()}] = true
		}
	}
	addWait := func(lock string, c *Contender) {
		r := c.Record
		if r == nil || waits[wait{lock, r.ID, r.Goroutine, r.Since.UnixNano()}] {
			return
		}
		s.Events = append(s.Events, Event{EventRecord: EventRecord{Kind: EventWait, Lock: lock, ID: r.ID, Goroutine: r.Goroutine,
			Stack: r.Stack, Time: r.Since}, Revision: c.Token})
	}
	for i := range s.Waiters {
		addWait(s.Waiters[i].Lock, &s.Waiters[i].Contender)
	}
	for _, l := range s.Locks {
		if h := l.Holder; h != nil && !l.Expired && l.SinceRev > h.Token {
			addWait(l.Name, h)
		}
	}
	type hold struct {
		lock  string
		token int64
	}
	logged := map[hold]bool{}
	for _, e := range s.Events {
		if e.Kind == EventAcquire || e.Kind == EventRecovered {
			logged[hold{e.Lock, e.Token}] = true
		}
	}
	add := func(lock string, token, rev int64, id procid.ID, g int64, stack uint64, t time.Time) {
		if logged[hold{lock, token}] {
			return
		}
		logged[hold{lock, token}] = true
		s.Events = append(s.Events, Event{EventRecord: EventRecord{Kind: EventAcquire, Lock: lock, ID: id, Goroutine: g,
			Stack: stack, Time: t, Token: token}, Revision: rev})
	}
	for _, l := range s.Locks {
		if h := l.Holder; h != nil && h.Record != nil {
			rev := l.SinceRev
			if rev == 0 {
				rev = h.Token
			}
			add(l.Name, h.Token, rev, h.Record.ID, h.Record.Goroutine, h.Record.Stack, l.Since)
		}
	}
	for _, lr := range s.Lost {
		add(lr.Lock, lr.HolderRev, lr.HolderRev, lr.ID, lr.Goroutine, lr.Stack, lr.Since)
	}
}

// contender reads a key under a lock's prefix.
func contender(kv *mvccpb.KeyValue) Contender {
	c := Contender{Key: string(kv.Key), Lease: kv.Lease, Token: kv.CreateRevision}
	if rec, ok := DecodeHolder(kv.Value); ok {
		c.Record = rec
	} else {
		v := kv.Value
		if len(v) > 64 {
			v = v[:64]
		}
		c.Value = string(v)
	}
	return c
}

// lockState works out who holds a lock from its contender keys and the
// shadows of etcdreg's contenders (by leaf), as the
// waiters themselves do (Mutex.Lock): the first key owns it, unless a
// shadow created before it has lost its key (an expired holder). It
// returns the lock and its waiters, oldest first.
func lockState(name string, cs []Contender, shadows map[string]*mvccpb.KeyValue) (Lock, []Contender) {
	l := Lock{Name: name, LeaseTTL: -1}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Token < cs[j].Token })
	live := map[int64]bool{}
	for _, c := range cs {
		live[c.Token] = true
	}
	first := int64(math.MaxInt64)
	if len(cs) > 0 {
		first = cs[0].Token
	}
	var expired *Contender
	for _, kv := range shadows {
		if live[kv.CreateRevision] || kv.CreateRevision > first {
			continue // its key stands; or it expired waiting behind the first
		}
		c := contender(kv)
		if c.Record == nil || !c.Record.Held {
			continue // a waiter's: it never owned the lock
		}
		c.Lease = c.Record.Lease
		if expired == nil || c.Token < expired.Token {
			expired = &c
		}
	}
	waiters := cs
	switch {
	case expired != nil:
		l.Holder, l.Expired = expired, true
		l.Since = expired.Record.Since
		if len(cs) > 0 {
			l.Next = &cs[0]
			if cs[0].Record != nil && cs[0].Record.Policy == Stall.String() {
				l.Stalled = true
			} else {
				waiters = cs[1:]
			}
		}
	case len(cs) > 0:
		l.Holder = &cs[0]
		waiters = cs[1:]
		if sh := shadows[leafOf(cs[0].Key)]; sh != nil && sh.CreateRevision == cs[0].Token {
			l.Since, l.SinceRev = heldSince(sh)
		}
	}
	return l, waiters
}

// Stack returns the frames of stack id recorded by process id.
func (s *Snapshot) Stack(id procid.ID, stack uint64) ([]stackdump.Frame, bool) {
	fs, ok := s.stacks[procKey(id)][stack]
	return fs, ok
}

// Process returns the process record of id.
func (s *Snapshot) Process(id procid.ID) (Process, bool) {
	for _, p := range s.Processes {
		if p.ID == id {
			return p, true
		}
	}
	return Process{}, false
}

// RequestStacks asks process id of run for its goroutines, through etcd:
// it puts P/req/PROC and waits, until ctx ends, for the process's answer
// in P/ans/PROC.
func RequestStacks(ctx context.Context, cli *clientv3.Client, run string, id procid.ID) (*stackdump.Snapshot, bool, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, false, err
	}
	k := keys{p}
	pk := procKey(id)
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	put, err := cli.Put(ctx, k.req(pk), nonce)
	if err != nil {
		return nil, false, unreachable("ask "+id.String()+" for its stacks", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Delete(dctx, k.req(pk))
		cancel()
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, k.ans(pk), clientv3.WithRev(put.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return nil, false, unreachable("wait for the stacks of "+id.String(), err)
		}
		for _, ev := range wr.Events {
			var a answer
			if ev.Type != clientv3.EventTypePut || decode(ev.Kv.Value, &a) != nil || a.Request != nonce {
				continue
			}
			snap, err := stackdump.Parse(strings.NewReader(a.Dump))
			if err != nil && snap == nil {
				return nil, a.Truncated, err
			}
			return snap, a.Truncated, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("etcdreg: %s did not answer the stack request: %w", id, err)
	}
	return nil, false, errors.New("etcdreg: watch ended")
}

// LockOf names the etcdreg lock whose key prefix is prefix
// (/lockwatch/RUN/lock/NAME, as Mutex.Prefix returns it): its run and
// name; ok is false for any other prefix.
func LockOf(prefix string) (run, name string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSuffix(prefix, "/"), "/lockwatch/")
	if !found {
		return "", "", false
	}
	run, name, found = strings.Cut(rest, "/lock/")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	if _, err := Prefix(run); err != nil {
		return "", "", false
	}
	return run, unesc(name), true
}

// A StackRef names a stack recorded by a process of a run.
type StackRef struct {
	ID    procid.ID
	Stack uint64
}

// ReadStacks reads the recorded stacks refs of run, in one range request
// per 100 of them; a stack that is not recorded (any more) is left out.
func ReadStacks(ctx context.Context, cli *clientv3.Client, run string, refs []StackRef) (map[StackRef][]stackdump.Frame, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	k := keys{p}
	out := map[StackRef][]stackdump.Frame{}
	for len(refs) > 0 {
		n := min(len(refs), 100)
		var ops []clientv3.Op
		for _, ref := range refs[:n] {
			ops = append(ops, clientv3.OpGet(k.stack(procKey(ref.ID), ref.Stack)))
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, unreachable("read the stacks of run "+run, err)
		}
		for i, ref := range refs[:n] {
			var sv stackValue
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 && decode(kvs[0].Value, &sv) == nil {
				out[ref] = sv.Frames
			}
		}
		refs = refs[n:]
	}
	return out, nil
}

// heldSince reads a holder's shadow: since when, and from which revision,
// it has held the lock; zero if the shadow is not marked Held.
func heldSince(sh *mvccpb.KeyValue) (time.Time, int64) {
	var rec HolderRecord
	switch {
	case decodeHolder(sh.Value, &rec) != nil || !rec.Held:
		return time.Time{}, 0
	case rec.Acquired.IsZero():
		return rec.Since, sh.CreateRevision // first when it queued
	default:
		return rec.Acquired, sh.ModRevision
	}
}

func leafOf(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }

// AcquiredAt returns since when the etcdreg contender whose key is key
// (under the prefix of lock name of run), created at revision token, has
// held the lock, by its shadow marked Held: the time (the clock of the
// process that marked it) and the revision; ok is false when its shadow
// is not marked (it does not hold the lock, or it has not marked it yet).
func AcquiredAt(ctx context.Context, cli *clientv3.Client, run, name, key string, token int64) (t time.Time, rev int64, ok bool) {
	p, err := Prefix(run)
	if err != nil {
		return time.Time{}, 0, false
	}
	resp, err := cli.Get(ctx, keys{p}.shadowDir(name)+leafOf(key))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != token {
		return time.Time{}, 0, false
	}
	t, rev = heldSince(resp.Kvs[0])
	return t, rev, rev != 0
}

// InRun reports whether process id has a process record in run.
func InRun(ctx context.Context, cli *clientv3.Client, run string, id procid.ID) (bool, error) {
	p, err := Prefix(run)
	if err != nil {
		return false, err
	}
	resp, err := cli.Get(ctx, keys{p}.proc(procKey(id)), clientv3.WithCountOnly())
	if err != nil {
		return false, unreachable("read run "+run, err)
	}
	return resp.Count == 1, nil
}
