// Package etcdsrc presents a run kept in etcd (package etcdreg) to
// lockwatch's backend-neutral diagnosis (internal/report): it reads the run
// (etcdreg.Read) and turns it into a lockstate.Snapshot of locks of kind
// "etcd", with each process's status from its lease (or from /proc, for the
// processes of this host) and the run's stack records as the resolver.
//
//	src := report.Sources{Locks: []lockstate.Source{etcdsrc.New(cli, run)}, Host: liveness.System{}}
//	r, err := report.Diagnose(ctx, src, report.Options{})
//
// The diagnosis then finds dead-holder (an expired lease is the backend's
// proof), cycle and stuck-holder across hosts; a lost lock, which the model
// has no kind for, is reported in the snapshot's notes (etcdreg.Diagnose
// reports it as a finding).
package etcdsrc

import (
	"context"
	"fmt"
	"os"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/internal/report/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Kind is the kind of the locks a Source reads.
const Kind = "etcd"

// A Source reads one etcd run. It is safe for concurrent use.
type Source struct {
	Client *clientv3.Client
	Run    string
	// LocalHost is the host name this machine has in the records: its
	// processes are checked in /proc. Default $LOCKWATCH_HOST, else the
	// host name.
	LocalHost string
}

// New returns the Source of run.
func New(cli *clientv3.Client, run string) Source { return Source{Client: cli, Run: run} }

// Read reads the run once, in one range request; its errors are etcdreg's
// (wrapping etcdreg.ErrUnreachable when etcd cannot be reached).
func (s Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	snap, err := etcdreg.Read(ctx, s.Client, s.Run)
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
	return convert(snap, local), nil
}

func convert(s *etcdreg.Snapshot, local string) *lockstate.Snapshot {
	out := &lockstate.Snapshot{Run: "etcd:" + s.Run, Taken: s.Taken, Stacks: resolver{s}}
	status := map[procid.ID]procid.Status{}
	for _, p := range s.Processes {
		st := procid.Expired
		switch {
		case p.ID.Host == local:
			st, _ = proc.Check(procid.ID{PID: p.ID.PID, Start: p.ID.Start})
		case p.Alive:
			st = procid.Alive
		}
		status[p.ID] = st
		out.Processes = append(out.Processes, lockstate.Process{ID: p.ID, Role: p.Role, Command: p.Command,
			Started: p.Registered, Closed: !p.Exited.IsZero(), ClosedAt: p.Exited, Status: st})
	}
	waiters := map[string][]lockstate.Waiter{}
	for _, w := range s.Waiters {
		waiters[w.Lock] = append(waiters[w.Lock], lockstate.Waiter{Party: lockstate.Party{ID: w.ID, Goroutine: w.Goroutine},
			Since: w.Since, Stack: w.Stack})
	}
	for _, l := range s.Locks {
		ll := lockstate.Lock{Kind: Kind, Name: l.Name, Waiters: waiters[l.Name],
			Recovery: "waiters never get it under the Stall policy: end the run, or let a Recover waiter take it (Lock returns ErrOwnerDead) and repair what it protected"}
		if h := l.Holder; h != nil {
			ll.Holders = []lockstate.Holder{{Party: lockstate.Party{ID: h.ID, Goroutine: h.Goroutine}, Since: h.Since, Stack: h.Stack}}
			if l.Expired() && status[h.ID] != procid.Alive {
				ll.Abandoned = &lockstate.Proof{Reason: lockstate.LeaseExpired,
					Says: fmt.Sprintf("its lease %x expired while its record (revision %d) says it holds the lock", h.Lease, l.HolderRev)}
			}
		}
		out.Locks = append(out.Locks, ll)
	}
	for _, lr := range s.Lost {
		if status[lr.ID] == procid.Alive {
			out.Notes = append(out.Notes, fmt.Sprintf("lost-lock: %s/%d lost %q (its lease %x expired) while inside its critical section since %s",
				lr.ID.Host, lr.ID.PID, lr.Lock, lr.Lease, lr.Since.Format("15:04:05.000")))
		}
	}
	for _, e := range s.Events {
		out.Events = append(out.Events, lockstate.Event{Seq: uint64(e.Revision), Time: e.Time, Kind: string(e.Kind),
			Lock: lockstate.Key{Kind: Kind, Name: e.Lock}, Party: lockstate.Party{ID: e.ID, Goroutine: e.Goroutine}, Stack: e.Stack})
	}
	if s.Truncated {
		out.Notes = append(out.Notes, fmt.Sprintf("the run has more than %d keys; the rest were not read", etcdreg.MaxKeys))
	}
	out.Notes = append(out.Notes, s.Bad...)
	return out
}

type resolver struct{ s *etcdreg.Snapshot }

func (r resolver) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) { return r.s.Stack(p, id) }
