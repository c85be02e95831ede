package etcdsrc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// TestConformance: etcd's source passes the suite every source passes, its
// scenarios built on an embedded etcd by registries of several hosts (this
// process's, named apart), with real leases that etcd revokes.
func TestConformance(t *testing.T) {
	_, cli := serverClient(t)
	lockstatetest.Run(t, etcdHarness{cli: cli})
}

type etcdHarness struct{ cli *clientv3.Client }

func (h etcdHarness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	run := fmt.Sprintf("conf-%s-%d", s, time.Now().UnixNano())
	open := func(host string, p etcdreg.Policy) *etcdreg.Registry {
		r, err := etcdreg.Open(ctx, h.cli, run, etcdreg.Options{Host: host, Role: host, Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	lock := func(r *etcdreg.Registry, name string) {
		m, err := r.Mutex(name)
		if err == nil {
			err = m.Lock(ctx)
		}
		if err != nil && !errors.Is(err, etcdreg.ErrOwnerDead) {
			t.Fatal(err)
		}
	}
	// wait has a goroutine wait for name, in the background, until the
	// test ends.
	wait := func(r *etcdreg.Registry, name string) {
		m, err := r.Mutex(name)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = m.Lock(ctx) }()
	}
	// waiters reads the run until name has n waiters.
	waiters := func(name string, n int) {
		deadline := time.Now().Add(time.Minute)
		for {
			snap, err := etcdreg.Read(ctx, h.cli, run)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, w := range snap.Waiters {
				if w.Lock == name {
					got++
				}
			}
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters of %s; want %d", got, name, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	q := lockstate.Key{Kind: etcdsrc.Kind, Name: "q"}
	setup := &lockstatetest.Setup{Lock: q,
		Sources: report.Sources{Locks: []lockstate.Source{etcdsrc.Source{Client: h.cli, Run: run, LocalHost: "host-a"}}, Host: report.LocalHost{}}}
	switch s {
	case lockstatetest.DeadHolder:
		// host-c leaves the run holding q: etcd revokes its lease.
		c, b := open("host-c", etcdreg.PolicyDefault), open("host-b", etcdreg.PolicyDefault)
		lock(c, "q")
		wait(b, "q")
		waiters("q", 1)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		setup.Holder, setup.Waiter = c.ID(), b.ID()
	case lockstatetest.LostLock:
		// etcd revokes host-a's lease while it holds q and runs on (it is
		// this process, alive by /proc): host-b takes q.
		a, b := open("host-a", etcdreg.PolicyDefault), open("host-b", etcdreg.Recover)
		lock(a, "q")
		if _, err := h.cli.Revoke(ctx, a.Lease()); err != nil {
			t.Fatal(err)
		}
		lock(b, "q")
		setup.Holder = a.ID()
	case lockstatetest.Cycle:
		// A goroutine of each host takes its first lock, then, once both
		// have, waits for the other's.
		a, b := open("host-a", etcdreg.PolicyDefault), open("host-b", etcdreg.PolicyDefault)
		held, goOn, ended := make(chan error, 2), make(chan struct{}), make(chan error, 2)
		for _, w := range []struct {
			r           *etcdreg.Registry
			first, then string
		}{{a, "x", "y"}, {b, "y", "x"}} {
			go func() {
				m1, err := w.r.Mutex(w.first)
				if err == nil {
					err = m1.Lock(ctx)
				}
				held <- err
				m2, err := w.r.Mutex(w.then)
				if err == nil {
					<-goOn
					err = m2.Lock(ctx)
				}
				ended <- err
			}()
		}
		for range 2 {
			if err := <-held; err != nil {
				t.Fatal(err)
			}
		}
		close(goOn)
		waiters("x", 1)
		waiters("y", 1)
		setup.Locks = []lockstate.Key{{Kind: etcdsrc.Kind, Name: "x"}, {Kind: etcdsrc.Kind, Name: "y"}}
		setup.Loop = []procid.ID{a.ID(), b.ID()}
		t.Cleanup(func() {
			// Registered after the registries' Close: runs before them.
			cancel()
			for range 2 {
				if err := <-ended; err == nil {
					t.Error("a Lock of the cycle returned nil after its context ended")
				}
			}
		})
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		a, b := open("host-a", etcdreg.PolicyDefault), open("host-b", etcdreg.PolicyDefault)
		lock(a, "q")
		wait(b, "q")
		waiters("q", 1)
		setup.Holder, setup.Waiter = a.ID(), b.ID()
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = time.Nanosecond
		}
	case lockstatetest.SelfDeadlock:
		// One goroutine takes q, then takes it again (a Mutex of its own).
		a := open("host-a", etcdreg.PolicyDefault)
		m1, err := a.Mutex("q")
		if err != nil {
			t.Fatal(err)
		}
		m2, err := a.Mutex("q")
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan error, 1)
		go func() {
			err := m1.Lock(ctx)
			held <- err
			if err == nil {
				_ = m2.Lock(ctx)
			}
		}()
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		waiters("q", 1)
		setup.Holder = a.ID()
	case lockstatetest.Readers:
		return nil, lockstatetest.Cannot("an etcd lock is exclusive: it has no readers")
	case lockstatetest.CycleKinds:
		return nil, lockstatetest.Cannot("etcd's source reads one kind of lock")
	default:
		return nil, lockstatetest.Cannot("unknown scenario")
	}
	return setup, nil
}
