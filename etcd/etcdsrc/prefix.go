package etcdsrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/stackdump"
)

// A PrefixSource reads locks that lockwatch did not take: key prefixes used
// by etcd's own lock (concurrency.Mutex, `etcdctl lock NAME`, whose prefix
// is NAME) or election (concurrency.Election, `etcdctl elect`): a key per
// session under PREFIX/, the owner (or leader) the one with the lowest
// create revision, the others waiting in that order. Each session is a
// party of its own, named by its lease (SessionID): a session that holds one
// lock and waits in another is one party, so a cycle across hosts shows
// from leases alone. A contender that is etcdreg's (the prefix is an etcdreg
// lock's, /lockwatch/RUN/lock/NAME, which concurrency.Mutex users share) is
// named by its record: its process, goroutine, since when it waits or
// holds, and its acquire stack, so that a stuck holder is found as in a
// run. It is safe for concurrent use.
type PrefixSource struct {
	Client   *clientv3.Client
	Prefixes []string
	// Seen, when set (watch), keeps from one reading to the next when
	// each contender key was first seen: a contender whose record gives no
	// time (a session of etcd's own lock) is then held, or waiting, at
	// least since then, and a stuck-holder can be found, worded as a lower
	// bound. Without it (attach), such a holder's time is unknown.
	Seen *Seen
}

// Seen is when a watch first saw each contender key of its prefixes, and
// first saw it hold (first in line). It is safe for concurrent use.
type Seen struct {
	mu    sync.Mutex
	now   func() time.Time
	began time.Time
	first map[seenKey]seenAt
}

type seenKey struct {
	key string
	rev int64 // its create revision: a key deleted and created again is another contender
}

type seenAt struct{ queued, held time.Time }

// NewSeen starts watching, by the clock now (time.Now if nil).
func NewSeen(now func() time.Time) *Seen {
	if now == nil {
		now = time.Now
	}
	return &Seen{now: now, began: now(), first: map[seenKey]seenAt{}}
}

// observe records the contender keys of one reading of every prefix, each
// in queue order, and returns when each was first seen, and first seen
// holding; keys no longer there are forgotten.
func (s *Seen) observe(prefixes [][]*mvccpb.KeyValue) map[seenKey]seenAt {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := map[seenKey]seenAt{}
	for _, kvs := range prefixes {
		for i, kv := range kvs {
			k := seenKey{string(kv.Key), kv.CreateRevision}
			t, ok := s.first[k]
			if !ok {
				t.queued = now
			}
			if i == 0 && t.held.IsZero() {
				t.held = now
			}
			out[k] = t
		}
	}
	s.first = out
	return out
}

// PrefixSources returns what report.Diagnose reads to diagnose the lock
// prefixes: when some are etcdreg locks', with the live stacks of their
// etcdreg contenders, asked through etcd as for a run.
func PrefixSources(cli *clientv3.Client, prefixes []string) report.Sources {
	return WatchedPrefixSources(cli, prefixes, nil)
}

// WatchedPrefixSources is PrefixSources for a watch, which keeps in seen
// (NewSeen, once per watch) when it first saw each contender.
func WatchedPrefixSources(cli *clientv3.Client, prefixes []string, seen *Seen) report.Sources {
	src := report.Sources{Locks: []lockstate.Source{PrefixSource{Client: cli, Prefixes: prefixes, Seen: seen}}, Host: report.LocalHost{}}
	runs := map[string]bool{}
	for _, p := range prefixes {
		if run, _, ok := etcdreg.LockOf(p); ok {
			runs[run] = true
		}
	}
	if len(runs) > 0 {
		src.Stacks, src.Remote = prefixStacks{cli: cli, runs: runs}, true
	}
	return src
}

// prefixStacks asks the etcdreg contenders of lock prefixes for their
// goroutines, through etcd, in the run their record names.
type prefixStacks struct {
	cli  *clientv3.Client
	runs map[string]bool // the runs of the prefixes
}

func (prefixStacks) Profile(context.Context, procid.ID) (*stackdump.Profile, error) {
	return nil, errNoProfile
}

func (s prefixStacks) Goroutines(ctx context.Context, id procid.ID, _ []int64) (*stackdump.Snapshot, error) {
	return s.Text(ctx, id)
}

// Text asks process id in the run of the prefixes that has it (one run
// in practice: a process's records are in one run).
func (s prefixStacks) Text(ctx context.Context, id procid.ID) (*stackdump.Snapshot, error) {
	if id.PID <= 0 {
		return nil, fmt.Errorf("%s: a session of etcd's own lock, not etcdreg's, has no stacks to give", id.Host)
	}
	var errs []error
	for run := range s.runs {
		if ok, _ := etcdreg.InRun(ctx, s.cli, run, id); !ok {
			continue
		}
		snap, _, err := etcdreg.RequestStacks(ctx, s.cli, run, id)
		if err == nil {
			return snap, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("pid %d on %s has no process record in the run of the prefixes", id.PID, id.Host)
	}
	return nil, errors.Join(errs...)
}

// stackSet resolves the recorded stacks of a reading's etcdreg contenders.
type stackSet map[etcdreg.StackRef][]stackdump.Frame

func (s stackSet) Stack(id procid.ID, stack uint64) ([]stackdump.Frame, bool) {
	fr, ok := s[etcdreg.StackRef{ID: id, Stack: stack}]
	return fr, ok
}

// maxContenders bounds the keys read under one prefix.
const maxContenders = 10_000

// Read reads each prefix once, in one range request per prefix at one
// revision, plus one lease query and one history lookup per holder.
func (s PrefixSource) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	out := &lockstate.Snapshot{Run: LockURL(s.Client.Endpoints(), s.Prefixes), Taken: time.Now()}
	if s.Seen != nil {
		out.Taken = s.Seen.now() // the clock the times seen are on
	}
	var ops []clientv3.Op
	for _, p := range s.Prefixes {
		ops = append(ops, clientv3.OpGet(p+"/", clientv3.WithPrefix(), clientv3.WithLimit(maxContenders)))
	}
	resp, err := s.Client.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcdsrc: read lock prefixes: %w (%v): check that the cluster runs and that the endpoints are right", etcdreg.ErrUnreachable, err)
	}
	seen := map[procid.ID]bool{}
	refs := map[string][]etcdreg.StackRef{} // by run: the acquire stacks to read
	// party names a contender: an etcdreg one (of run, "" if the prefix is
	// not an etcdreg lock's) by its record, with since when it asked and
	// where; any other by its lease.
	party := func(kv *mvccpb.KeyValue, run string) lockstate.Holder {
		if rec, ok := etcdreg.DecodeHolder(kv.Value); ok {
			if !seen[rec.ID] {
				seen[rec.ID] = true
				out.Processes = append(out.Processes, lockstate.Process{ID: rec.ID, Status: procid.Alive,
					Role: fmt.Sprintf("etcdreg, lease %x", kv.Lease)})
			}
			h := lockstate.Holder{Party: lockstate.Party{ID: rec.ID, Goroutine: rec.Goroutine}}
			if run != "" {
				h.Since, h.Stack = rec.Since, rec.Stack
				if rec.Stack != 0 {
					refs[run] = append(refs[run], etcdreg.StackRef{ID: rec.ID, Stack: rec.Stack})
				}
			}
			return h
		}
		id := SessionID(kv.Lease)
		if !seen[id] {
			seen[id] = true
			cmd := fmt.Sprintf("etcd session, lease %x", kv.Lease)
			if v := kv.Value; len(v) > 0 {
				if len(v) > 64 {
					v = v[:64]
				}
				cmd += fmt.Sprintf(", value %q", v)
			}
			out.Processes = append(out.Processes, lockstate.Process{ID: id, Status: procid.Alive, Role: fmt.Sprintf("session %x", kv.Lease), Command: cmd})
		}
		return lockstate.Holder{Party: lockstate.Party{ID: id, Goroutine: 1}}
	}
	for i := range s.Prefixes {
		sortByCreate(resp.Responses[i].GetResponseRange().Kvs)
	}
	var firstSeen map[seenKey]seenAt
	if s.Seen != nil {
		all := make([][]*mvccpb.KeyValue, len(s.Prefixes))
		for i := range s.Prefixes {
			all[i] = resp.Responses[i].GetResponseRange().Kvs
		}
		firstSeen = s.Seen.observe(all)
	}
	// seenSince gives a contender whose record gives no time (under watch)
	// the time it was first seen waiting, or holding: a lower bound.
	seenSince := func(h *lockstate.Holder, kv *mvccpb.KeyValue, holding bool) bool {
		t, ok := firstSeen[seenKey{string(kv.Key), kv.CreateRevision}]
		if !ok || !h.Since.IsZero() {
			return false
		}
		h.Since = t.queued
		if holding {
			h.Since = t.held
		}
		return true
	}
	for i, p := range s.Prefixes {
		r := resp.Responses[i].GetResponseRange()
		kvs := r.Kvs
		l := lockstate.Lock{Kind: Kind, Name: p}
		if r.More {
			out.Notes = append(out.Notes, fmt.Sprintf("%s has more than %d contenders; the rest were not read", p, maxContenders))
		}
		run, name, _ := etcdreg.LockOf(p)
		for j, kv := range kvs {
			h := party(kv, run)
			if j == 0 {
				l.Holders = []lockstate.Holder{h}
				continue
			}
			seenSince(&h, kv, false)
			l.Waiters = append(l.Waiters, lockstate.Waiter{Party: h.Party, Since: h.Since, Stack: h.Stack})
		}
		l.Facts.Extra = []lockstate.Fact{{Name: "prefix", Value: p}}
		if len(kvs) > 0 {
			h := kvs[0]
			l.Facts.Extra = append(l.Facts.Extra,
				lockstate.Fact{Name: "holder key", Value: string(h.Key)},
				lockstate.Fact{Name: "token", Value: strconv.FormatInt(h.CreateRevision, 10)},
				lockstate.Fact{Name: "lease", Value: fmt.Sprintf("%x", h.Lease)})
			if t, err := s.Client.TimeToLive(ctx, clientv3.LeaseID(h.Lease)); err == nil && t.TTL >= 0 {
				l.Facts.Extra = append(l.Facts.Extra, lockstate.Fact{Name: "lease left", Value: (time.Duration(t.TTL) * time.Second).String()})
			}
			since, _, first := s.heldSince(ctx, p, h, resp.Header.Revision)
			l.Facts.Extra = append(l.Facts.Extra, lockstate.Fact{Name: "held since", Value: since})
			// An etcdreg holder's hold began when it asked, if it was
			// first; else when its shadow was marked Held (by the release
			// that made it first, or by itself); unmarked, it is not known
			// (and no stuck-holder can be found).
			if hd := &l.Holders[0]; !hd.Since.IsZero() && !first {
				hd.Since, _, _ = etcdreg.AcquiredAt(ctx, s.Client, run, name, string(h.Key), h.CreateRevision)
			}
			if hd := &l.Holders[0]; seenSince(hd, h, true) {
				hd.SinceSeen = true
				l.Facts.Extra = append(l.Facts.Extra, lockstate.Fact{Name: "seen held since",
					Value: fmt.Sprintf("%s, when lockwatch first saw this key hold it (watching since %s): at least that long", hd.Since.Format("15:04:05.000"), s.Seen.began.Format("15:04:05.000"))})
			}
			var order []string
			for _, kv := range kvs[1:] {
				order = append(order, fmt.Sprintf("%x@%d", kv.Lease, kv.CreateRevision))
			}
			if len(order) > 0 {
				l.Facts.Extra = append(l.Facts.Extra, lockstate.Fact{Name: "waiters (lease@revision, in order)", Value: strings.Join(order, " ")})
			}
		}
		out.Locks = append(out.Locks, l)
	}
	stacks := stackSet{}
	for run, rs := range refs {
		got, err := etcdreg.ReadStacks(ctx, s.Client, run, rs)
		if err != nil {
			out.Notes = append(out.Notes, fmt.Sprintf("the acquire stacks of run %s could not be read: %v", run, err))
			continue
		}
		for ref, fr := range got {
			stacks[ref] = fr
		}
	}
	out.Stacks = stacks
	return out, nil
}

// heldSince says, as precisely as etcd's revisions allow, since when the
// holder h has held prefix p: the revision that made it first (its key's
// creation, if nobody was before it; else the deletion of the key before
// it, looked up in etcd's history). etcd keeps no time for a revision, so
// it is said as a revision, with how many have passed since. It also
// returns that revision (0 if unknown) and whether the holder was first
// when its key was created.
func (s PrefixSource) heldSince(ctx context.Context, p string, h *mvccpb.KeyValue, now int64) (string, int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	before, err := s.Client.Get(ctx, p+"/", append(clientv3.WithLastCreate(), clientv3.WithRev(h.CreateRevision), clientv3.WithMaxCreateRev(h.CreateRevision-1))...)
	if err != nil {
		return fmt.Sprintf("after revision %d, when its key was created (the history before is not readable: %v)", h.CreateRevision, err), 0, false
	}
	if len(before.Kvs) == 0 {
		return fmt.Sprintf("revision %d, when its key was created (it was first); %d revisions ago (etcd keeps no time per revision)", h.CreateRevision, now-h.CreateRevision), h.CreateRevision, true
	}
	prev := string(before.Kvs[0].Key)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for wr := range s.Client.Watch(wctx, prev, clientv3.WithRev(h.CreateRevision+1), clientv3.WithFilterPut()) {
		if wr.Err() != nil {
			break
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete && ev.Kv.ModRevision <= now {
				return fmt.Sprintf("revision %d, when the key before it (%s) was deleted; %d revisions ago (etcd keeps no time per revision)", ev.Kv.ModRevision, prev, now-ev.Kv.ModRevision), ev.Kv.ModRevision, false
			}
		}
	}
	return fmt.Sprintf("after revision %d, when its key was created (the deletion of the key before it is compacted away)", h.CreateRevision), 0, false
}

func sortByCreate(kvs []*mvccpb.KeyValue) {
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].CreateRevision < kvs[j].CreateRevision })
}

// LockURL names lock prefixes on the endpoints as ParseLockURL reads them
// back: etcd://HOST:PORT/?lock=PREFIX&lock=...
func LockURL(endpoints []string, prefixes []string) string {
	hosts := make([]string, 0, len(endpoints))
	for _, ep := range endpoints {
		hosts = append(hosts, strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://"))
	}
	q := url.Values{"lock": prefixes}
	return URLScheme + strings.Join(hosts, ",") + "/?" + q.Encode()
}

// ParseLockURL reads etcd://HOST:PORT[,HOST:PORT...]/?lock=PREFIX[&lock=...]
// into the client endpoints and the lock prefixes (as `etcdctl lock`
// and concurrency.NewMutex take them: without the trailing '/'). It
// reports ok false when u names no lock prefixes (a run's URL).
func ParseLockURL(u string) (endpoints, prefixes []string, ok bool, err error) {
	rest, found := strings.CutPrefix(u, URLScheme)
	if !found {
		return nil, nil, false, nil
	}
	hosts, query, found := strings.Cut(rest, "/?")
	if !found {
		return nil, nil, false, nil
	}
	vals, err := url.ParseQuery(query)
	if err != nil || len(vals["lock"]) == 0 {
		return nil, nil, true, fmt.Errorf("%q: want %sHOST:PORT/?lock=PREFIX[&lock=PREFIX...], the prefixes given to etcdctl lock or concurrency.NewMutex", u, URLScheme)
	}
	for k := range vals {
		if k != "lock" {
			return nil, nil, true, fmt.Errorf("%q: unknown parameter %q: give lock=PREFIX", u, k)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, nil, true, fmt.Errorf("%q: endpoint %q is not HOST:PORT", u, h)
		}
		endpoints = append(endpoints, "http://"+h)
	}
	for _, p := range vals["lock"] {
		p = strings.TrimSuffix(p, "/")
		if p == "" {
			return nil, nil, true, fmt.Errorf("%q: an empty lock prefix: give the prefix etcdctl lock or concurrency.NewMutex was given", u)
		}
		prefixes = append(prefixes, p)
	}
	return endpoints, prefixes, true, nil
}
