// Package etcdsrc presents a run kept in etcd (package etcdreg) to
// lockwatch's backend-neutral diagnosis (report): it reads the run
// (etcdreg.Read) and turns it into a lockstate.Snapshot of locks of kind
// "etcd", with each process's status from its lease (or from /proc, for the
// processes of this host), the run's stack records as the resolver, and the
// processes' live stacks asked for through etcd itself.
//
//	r, err := report.Diagnose(ctx, etcdsrc.Sources(cli, run, ""), report.Options{})
//
// The diagnosis then finds, across hosts, dead-holder (proved by /proc on
// the holder's own host, or by its expired lease: the backend's proof),
// lost-lock (a holder whose lease expired while it still runs its critical
// section: lockstate.Lock.Lost), cycle and stuck-holder.
package etcdsrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Kind is the kind of the locks a Source reads.
const Kind = "etcd"

// Sources returns what report.Diagnose reads to diagnose run: its locks,
// this machine's liveness, and the live stacks of the run's processes on
// every host, through etcd. localHost is the host name this machine has in
// the records ("": $LOCKWATCH_HOST, else the host name).
func Sources(cli *clientv3.Client, run, localHost string) report.Sources {
	return report.Sources{
		Locks:  []lockstate.Source{Source{Client: cli, Run: run, LocalHost: localHost}},
		Host:   report.LocalHost{},
		Stacks: Stacks{Client: cli, Run: run},
		Remote: true,
	}
}

// A Source reads one etcd run. It is safe for concurrent use.
type Source struct {
	Client *clientv3.Client
	Run    string
	// LocalHost is the host name this machine has in the records: its
	// processes are checked in /proc. Default $LOCKWATCH_HOST, else the
	// host name.
	LocalHost string
	// Follower, when set, is where the run is read: kept from etcd's watch
	// (etcdreg.Follow), so that a reading takes only what changed.
	Follower *etcdreg.Follower
	// Seen, when set (watch), times the contenders whose records give no
	// time (sessions of etcd's own lock on the run's lock prefixes) from
	// when this watch first saw them, as PrefixSource does.
	Seen *Seen
}

// New returns the Source of run.
func New(cli *clientv3.Client, run string) Source { return Source{Client: cli, Run: run} }

// Read reads the run once, in one range request; its errors are etcdreg's
// (wrapping etcdreg.ErrUnreachable when etcd cannot be reached).
func (s Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	var snap *etcdreg.Snapshot
	var err error
	if s.Follower != nil {
		snap, err = s.Follower.Snapshot(ctx)
	} else {
		snap, err = etcdreg.Read(ctx, s.Client, s.Run)
	}
	if err != nil {
		return nil, err
	}
	local := s.LocalHost
	if local == "" {
		local = os.Getenv(etcdreg.EnvHost)
	}
	if local == "" {
		local, _ = os.Hostname()
	}
	out := convert(snap, local, func(id procid.ID) procid.Status {
		st, _ := procid.Check(procid.ID{PID: id.PID, Start: id.Start})
		return st
	})
	out.Run = URL(s.Client.Endpoints(), s.Run)
	if s.Seen != nil {
		s.Seen.time(snap, out)
	}
	return out, nil
}

// time gives the contenders of the run's locks that have no time of their
// own (sessions) the time this watch first saw them waiting, or holding:
// a lower bound, said so.
func (s *Seen) time(snap *etcdreg.Snapshot, out *lockstate.Snapshot) {
	queues := make([][]*mvccpb.KeyValue, 0, len(snap.Locks))
	byName := map[string]int{}
	for _, l := range snap.Locks {
		var q []*mvccpb.KeyValue
		owner := l.Owner()
		if owner != nil {
			q = append(q, &mvccpb.KeyValue{Key: []byte(owner.Key), CreateRevision: owner.Token, Lease: owner.Lease})
		}
		for _, w := range snap.Waiters {
			if w.Lock == l.Name && (owner == nil || w.Token != owner.Token) {
				q = append(q, &mvccpb.KeyValue{Key: []byte(w.Key), CreateRevision: w.Token, Lease: w.Lease})
			}
		}
		byName[l.Name] = len(queues)
		queues = append(queues, q)
	}
	first := s.observe(queues)
	out.Taken = s.now() // the clock the times seen are on
	// seenAs is when the session id was first seen in q, waiting (from
	// entry 1 on) or holding (entry 0).
	seenAs := func(q []*mvccpb.KeyValue, id procid.ID, holding bool) (time.Time, bool) {
		for j, kv := range q {
			if (j == 0) != holding || kv.Lease == 0 || SessionID(kv.Lease) != id {
				continue
			}
			at := first[seenKey{string(kv.Key), kv.CreateRevision}]
			if holding {
				return at.held, true
			}
			return at.queued, true
		}
		return time.Time{}, false
	}
	for i := range out.Locks {
		l := &out.Locks[i]
		j, ok := byName[l.Name]
		if !ok {
			continue
		}
		q := queues[j]
		if len(l.Holders) == 1 && l.Holders[0].Since.IsZero() && len(q) > 0 && q[0].Lease != 0 {
			if t, ok := seenAs(q, l.Holders[0].ID, true); ok {
				l.Holders[0].Since, l.Holders[0].SinceSeen = t, true
				l.Facts.Extra = append(l.Facts.Extra, lockstate.Fact{Name: "seen held since",
					Value: fmt.Sprintf("%s, when lockwatch first saw this key hold it (watching since %s): at least that long", t.Format("15:04:05.000"), s.began.Format("15:04:05.000"))})
			}
		}
		for k := range l.Waiters {
			if w := &l.Waiters[k]; w.Since.IsZero() {
				w.Since, _ = seenAs(q, w.ID, false)
			}
		}
	}
}

// convert turns a run's records into the model. A process of this host
// (local) is what check proves by pid and start time; any other is alive
// while its lease is, expired (dead or cut off from etcd: not a proof of
// death) otherwise. A contender that is not etcdreg's (a concurrency.Mutex,
// `etcdctl lock`, an election) is a session: alive, since its key exists
// only while its lease does.
func convert(s *etcdreg.Snapshot, local string, check func(procid.ID) procid.Status) *lockstate.Snapshot {
	out := &lockstate.Snapshot{Run: "etcd:" + s.Run, Taken: s.Taken, Stacks: resolver{s}}
	status := map[procid.ID]procid.Status{}
	for _, p := range s.Processes {
		st := procid.Expired
		switch {
		case p.ID.Host == local:
			st = check(p.ID)
		case p.Alive:
			st = procid.Alive
		}
		status[p.ID] = st
		out.Processes = append(out.Processes, lockstate.Process{ID: p.ID, Role: p.Role, Command: p.Command,
			Started: p.Registered, Closed: !p.Exited.IsZero(), ClosedAt: p.Exited, Status: st})
	}
	sessions := map[int64]bool{}
	party := func(c *etcdreg.Contender) lockstate.Holder {
		if r := c.Record; r != nil {
			return lockstate.Holder{Party: lockstate.Party{ID: r.ID, Goroutine: r.Goroutine}, Since: r.Since, Stack: r.Stack}
		}
		id := SessionID(c.Lease)
		if !sessions[c.Lease] {
			sessions[c.Lease] = true
			out.Processes = append(out.Processes, lockstate.Process{ID: id, Status: procid.Alive,
				Role: fmt.Sprintf("session %x", c.Lease), Command: "etcd lease " + fmt.Sprintf("%x", c.Lease) + ": not etcdreg's (concurrency.Mutex, etcdctl lock, an election)"})
		}
		return lockstate.Holder{Party: lockstate.Party{ID: id, Goroutine: 1}}
	}
	waiters := map[string][]lockstate.Waiter{}
	for i := range s.Waiters {
		w := &s.Waiters[i]
		h := party(&w.Contender)
		waiters[w.Lock] = append(waiters[w.Lock], lockstate.Waiter{Party: h.Party, Since: h.Since, Stack: h.Stack})
	}
	lost := map[string][]lockstate.Loss{}
	for _, lr := range s.Lost {
		says := fmt.Sprintf("its lease %x expired; it recorded so itself at %s", lr.Lease, lr.Noticed.Format("15:04:05.000"))
		if lr.TakenBy != nil {
			says = fmt.Sprintf("its lease %x expired (it is dead or cut off from etcd); pid %d on %s took the lock from it at %s (token %d; its own was %d)",
				lr.Lease, lr.TakenBy.PID, lr.TakenBy.Host, lr.Noticed.Format("15:04:05.000"), lr.TakenToken, lr.HolderRev)
		}
		lost[lr.Lock] = append(lost[lr.Lock], lockstate.Loss{
			Holder: lockstate.Holder{Party: lockstate.Party{ID: lr.ID, Goroutine: lr.Goroutine}, Since: lr.Since, Stack: lr.Stack},
			Says:   says})
	}
	for _, l := range s.Locks {
		ll := lockstate.Lock{Kind: Kind, Name: l.Name, Waiters: waiters[l.Name], Lost: lost[l.Name], Recovery: recovery(l)}
		ll.Facts.Extra = facts(l)
		if l.Holder != nil {
			holder := party(l.Holder)
			if !l.Since.IsZero() {
				holder.Since = l.Since
			}
			switch st := status[holder.ID]; {
			case !l.Expired:
				ll.Holders = []lockstate.Holder{holder}
			case l.Next != nil && !l.Stalled:
				// Another contender holds it by etcd's rule while the
				// expired holder, unless proved dead, may still be inside.
				ll.Holders = []lockstate.Holder{party(l.Next)}
				if !hasLoss(ll.Lost, holder.Party) && !provedDead(st) {
					ll.Lost = append(ll.Lost, lockstate.Loss{Holder: holder,
						Says: fmt.Sprintf("its lease %x expired (it is dead or cut off from etcd) while its record (token %d) says it holds the lock, and the next contender holds it now by etcd's rule", l.Holder.Lease, l.Holder.Token)})
				}
			case st == procid.Alive:
				// etcd took the lock from a holder that runs on: nobody
				// holds it now, and the holder lost it (unless its own
				// lost record says so already).
				if !hasLoss(ll.Lost, holder.Party) {
					ll.Lost = append(ll.Lost, lockstate.Loss{Holder: holder,
						Says: fmt.Sprintf("its lease %x expired: etcd deleted its key while its record (token %d) says it holds the lock", l.Holder.Lease, l.Holder.Token)})
				}
			default:
				ll.Holders = []lockstate.Holder{holder}
				says := fmt.Sprintf("its lease %x expired while its record (token %d) says it holds the lock", l.Holder.Lease, l.Holder.Token)
				if !provedDead(st) {
					says += ": it is dead or cut off from etcd"
				}
				ll.Abandoned = &lockstate.Proof{Reason: lockstate.LeaseExpired, Says: says}
			}
		}
		out.Locks = append(out.Locks, ll)
	}
	for _, e := range s.Events {
		out.Events = append(out.Events, lockstate.Event{Seq: uint64(e.Revision), Time: e.Time, Kind: string(e.Kind),
			Lock: lockstate.Key{Kind: Kind, Name: e.Lock}, Party: lockstate.Party{ID: e.ID, Goroutine: e.Goroutine}, Stack: e.Stack, Token: e.Token})
	}
	if s.Truncated {
		out.Notes = append(out.Notes, fmt.Sprintf("the run has more than %d keys; the rest were not read", etcdreg.MaxKeys))
	}
	out.Notes = append(out.Notes, s.Bad...)
	return out
}

// SessionID is the identity a contender that is not etcdreg's gets in the
// report: its lease, as a "process" -1 (no pid is known) on the
// pseudo-host "lease-LEASE".
func SessionID(lease int64) procid.ID {
	return procid.ID{Host: fmt.Sprintf("lease-%x", lease), PID: -1, Start: uint64(lease)}
}

// provedDead: a death proved in /proc on the process's own host (a lease
// expiry proves only that the process is dead or cut off from etcd).
func provedDead(st procid.Status) bool {
	return st == procid.Gone || st == procid.Zombie || st == procid.Reused
}

// facts are what etcd says of a lock: its prefix, the holder's token,
// lease and what remains of it, when it became the owner and how that is
// known.
func facts(l etcdreg.Lock) []lockstate.Fact {
	fs := []lockstate.Fact{{Name: "prefix", Value: l.Prefix}}
	if h := l.Holder; h != nil {
		fs = append(fs, lockstate.Fact{Name: "token", Value: strconv.FormatInt(h.Token, 10)},
			lockstate.Fact{Name: "lease", Value: fmt.Sprintf("%x", h.Lease)})
		if l.LeaseTTL >= 0 {
			fs = append(fs, lockstate.Fact{Name: "lease left", Value: l.LeaseTTL.String()})
		}
		switch {
		case l.Expired:
			fs = append(fs, lockstate.Fact{Name: "held since", Value: "its lease expired: see the holder's record"})
		case l.SinceRev > h.Token:
			fs = append(fs, lockstate.Fact{Name: "held since", Value: fmt.Sprintf("revision %d, when it became the owner (the clock of the release that made it first, or its own)", l.SinceRev)})
		case l.SinceRev == h.Token:
			fs = append(fs, lockstate.Fact{Name: "held since", Value: fmt.Sprintf("revision %d: it was first when it queued (its own clock)", h.Token)})
		default:
			fs = append(fs, lockstate.Fact{Name: "held since", Value: fmt.Sprintf("unknown: after revision %d, when it queued (no record of etcdreg's says when it became the owner)", h.Token)})
		}
	}
	if l.Next != nil && l.Expired {
		v := fmt.Sprintf("token %d, lease %x", l.Next.Token, l.Next.Lease)
		if l.Stalled {
			v += ": a Stall waiter, waiting for the expired holder's record"
		} else {
			v += ": holds it by etcd's rule"
		}
		fs = append(fs, lockstate.Fact{Name: "first in line", Value: v})
	}
	return fs
}

// recovery is what the waiters of a dead holder's lock can do: while the
// holder's lease runs, wait for etcd to end it.
func recovery(l etcdreg.Lock) string {
	const after = "Stall waiters still wait and a Recover waiter takes it (its Lock returns ErrOwnerDead): repair what it protected"
	if l.Holder != nil && !l.Expired && l.LeaseTTL >= 0 {
		return fmt.Sprintf("etcd deletes its key when its lease %x expires, in %s at most; then %s", l.Holder.Lease, l.LeaseTTL, after)
	}
	return "waiters never get it under the Stall policy: end the run, or let a Recover waiter take it (its Lock returns ErrOwnerDead) and repair what it protected"
}

func hasLoss(ls []lockstate.Loss, p lockstate.Party) bool {
	for _, l := range ls {
		if l.Party == p {
			return true
		}
	}
	return false
}

type resolver struct{ s *etcdreg.Snapshot }

func (r resolver) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) { return r.s.Stack(p, id) }

// Stacks asks the processes of a run for their goroutines through etcd
// (etcdreg.RequestStacks: a request key that each process's registry
// watches, a size-bounded answer): a report.Stacks that reaches every host,
// for report.Sources with Remote set.
type Stacks struct {
	Client *clientv3.Client
	Run    string
}

// errNoProfile: a registry answers with its text dump only.
var errNoProfile = errors.New("etcdsrc: a process answers through etcd with its text dump only, not a goroutine profile")

// Profile is not available through etcd: report asks a remote Stacks for
// text dumps only.
func (Stacks) Profile(context.Context, procid.ID) (*stackdump.Profile, error) {
	return nil, errNoProfile
}

// Goroutines asks process id for its goroutines; through etcd a process
// answers with its whole text dump (report asks a remote Stacks for Text
// only).
func (s Stacks) Goroutines(ctx context.Context, id procid.ID, _ []int64) (*stackdump.Snapshot, error) {
	return s.Text(ctx, id)
}

// Text asks process id for its goroutine dump, and waits for the answer
// until ctx ends.
func (s Stacks) Text(ctx context.Context, id procid.ID) (*stackdump.Snapshot, error) {
	snap, _, err := etcdreg.RequestStacks(ctx, s.Client, s.Run, id)
	return snap, err
}

// URLScheme starts the URL that names an etcd run:
// etcd://HOST:PORT[,HOST:PORT...]/RUN, its endpoints plain http.
const URLScheme = "etcd://"

// URL names run on the endpoints as ParseURL reads it back:
// etcd://127.0.0.1:2379/run-20261126-000434-9139. Endpoints that are not
// plain http are named as they are: "etcd run RUN at https://...".
func URL(endpoints []string, run string) string {
	hosts := make([]string, 0, len(endpoints))
	for _, ep := range endpoints {
		h, ok := strings.CutPrefix(ep, "http://")
		if !ok || strings.Contains(h, "/") {
			return fmt.Sprintf("etcd run %s at %s", run, strings.Join(endpoints, ","))
		}
		hosts = append(hosts, h)
	}
	return URLScheme + strings.Join(hosts, ",") + "/" + run
}

// ParseURL reads etcd://HOST:PORT[,HOST:PORT...]/RUN into the client
// endpoints (http://HOST:PORT) and the run's name.
func ParseURL(u string) (endpoints []string, run string, err error) {
	rest, ok := strings.CutPrefix(u, URLScheme)
	if !ok {
		return nil, "", fmt.Errorf("%q is not an etcd run's URL: want %sHOST:PORT/RUN", u, URLScheme)
	}
	hosts, run, _ := strings.Cut(rest, "/")
	if hosts == "" || run == "" {
		return nil, "", fmt.Errorf("%q: want %sHOST:PORT[,HOST:PORT...]/RUN, the endpoints and the run's name (as 'lockwatch run --etcd' prints it)", u, URLScheme)
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, "", fmt.Errorf("%q: endpoint %q is not HOST:PORT", u, h)
		}
		endpoints = append(endpoints, "http://"+h)
	}
	if _, err := etcdreg.Prefix(run); err != nil {
		return nil, "", fmt.Errorf("%q: %w", u, err)
	}
	return endpoints, run, nil
}
