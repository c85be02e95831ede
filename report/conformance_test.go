package report_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// TestConformance: the report's fake backend, a snapshot in memory whose
// processes' fates a fake host says, passes the suite every source passes.
func TestConformance(t *testing.T) { lockstatetest.Run(t, fakeHarness{}) }

// snapSource returns its snapshot at every read.
type snapSource struct{ s *lockstate.Snapshot }

func (f snapSource) Read(ctx context.Context) (*lockstate.Snapshot, error) { return f.s, ctx.Err() }

// statusHost says each process's status from a table: alive when absent.
type statusHost map[procid.ID]procid.Status

func (h statusHost) Check(id procid.ID) (procid.Status, error) {
	if st, ok := h[id]; ok {
		return st, nil
	}
	return procid.Alive, nil
}

func (statusHost) Command(int) string { return "" }

type fakeHarness struct{}

func (fakeHarness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	now := time.Now()
	long, short := now.Add(-time.Minute), now.Add(-time.Millisecond)
	pA, pB := procid.ID{PID: 100, Start: 1}, procid.ID{PID: 200, Start: 2}
	a := lockstate.Key{Kind: "fake", Name: "a"}
	b := lockstate.Key{Kind: "fake", Name: "b"}
	other := lockstate.Key{Kind: "fake-rw", Name: "m"}
	party := func(id procid.ID, g int64) lockstate.Party { return lockstate.Party{ID: id, Goroutine: g} }
	lock := func(k lockstate.Key, h []lockstate.Holder, w ...lockstate.Waiter) lockstate.Lock {
		return lockstate.Lock{Kind: k.Kind, Name: k.Name, Holders: h, Waiters: w}
	}
	holds := func(id procid.ID, g int64, since time.Time) []lockstate.Holder {
		return []lockstate.Holder{{Party: party(id, g), Since: since}}
	}
	waits := func(id procid.ID, g int64, since time.Time) lockstate.Waiter {
		return lockstate.Waiter{Party: party(id, g), Since: since}
	}
	snap := &lockstate.Snapshot{Run: "fake", Taken: now,
		Processes: []lockstate.Process{{ID: pA, Started: long}, {ID: pB, Started: long}}}
	setup := &lockstatetest.Setup{Lock: a, Holder: pA, Waiter: pB}
	host := statusHost{}
	switch s {
	case lockstatetest.DeadHolder:
		snap.Locks = []lockstate.Lock{lock(a, holds(pA, 1, long), waits(pB, 2, long))}
		host[pA] = procid.Gone
	case lockstatetest.LostLock:
		l := lock(a, nil)
		l.Lost = []lockstate.Loss{{Holder: holds(pA, 1, long)[0], Says: "its lease expired"}}
		snap.Locks = []lockstate.Lock{l}
	case lockstatetest.Cycle, lockstatetest.CycleKinds:
		second := b
		if s == lockstatetest.CycleKinds {
			second = other
		}
		snap.Locks = []lockstate.Lock{lock(a, holds(pA, 1, long), waits(pB, 2, short)), lock(second, holds(pB, 2, long), waits(pA, 1, short))}
		setup.Locks, setup.Loop = []lockstate.Key{a, second}, []procid.ID{pA, pB}
	case lockstatetest.StuckHolder:
		snap.Locks = []lockstate.Lock{lock(a, holds(pA, 1, long), waits(pB, 2, long))}
		setup.StuckAfter = time.Second
	case lockstatetest.Readers:
		h := []lockstate.Holder{{Party: party(pA, 1), Read: true, Since: short}, {Party: party(pA, 3), Read: true, Since: short}}
		snap.Locks = []lockstate.Lock{lock(a, h, waits(pB, 2, short))}
	case lockstatetest.SelfDeadlock:
		snap.Locks = []lockstate.Lock{lock(a, holds(pA, 1, long), waits(pA, 1, short))}
	case lockstatetest.NoFinding:
		snap.Locks = []lockstate.Lock{lock(a, holds(pA, 1, short), waits(pB, 2, short))}
	default:
		return nil, lockstatetest.Cannot("a scenario the fake does not know")
	}
	setup.Sources = report.Sources{Locks: []lockstate.Source{snapSource{snap}}, Host: host}
	return setup, nil
}
