package etcdsrc_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
)

// TestReport: an etcd run diagnosed by the backend-neutral report: a cycle
// between two hosts, and a holder whose lease is gone while its record
// holds a lock (it left the run holding it): dead-holder, proved by the
// backend.
func TestReport(t *testing.T) {
	_, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(host string) *etcdreg.Registry {
		r, err := etcdreg.Open(ctx, cli, "model", etcdreg.Options{Host: host, Role: "role-" + host})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	lock := func(r *etcdreg.Registry, name string) *etcdreg.Mutex {
		m, err := r.Mutex(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b, c := open("host-a"), open("host-b"), open("host-c")
	defer a.Close()
	defer b.Close()
	lock(c, "z")
	if err := c.Close(); err != nil { // leaves holding z: its lease is revoked
		t.Fatal(err)
	}
	// Each goroutine takes its first lock, then, once both have, waits for
	// the other's: a cycle of two goroutines on two hosts.
	ready, start := make(chan struct{}, 2), make(chan struct{})
	errs := make(chan error, 2)
	for _, w := range []struct {
		r           *etcdreg.Registry
		first, then string
	}{{a, "x", "y"}, {b, "y", "x"}} {
		go func() {
			m1, err := w.r.Mutex(w.first)
			if err == nil {
				err = m1.Lock(ctx)
			}
			ready <- struct{}{}
			if err != nil {
				errs <- err
				return
			}
			<-start
			m2, err := w.r.Mutex(w.then)
			if err != nil {
				errs <- err
				return
			}
			errs <- m2.Lock(ctx)
		}()
	}
	<-ready
	<-ready
	close(start)
	deadline := time.Now().Add(60 * time.Second)
	var r *report.Report
	var err error
	for time.Now().Before(deadline) {
		r, err = report.Diagnose(ctx, report.Sources{Locks: []lockstate.Source{etcdsrc.New(cli, "model")}, Host: liveness.System{}}, report.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Findings) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval: the two waits begin in their goroutines
	}
	var kinds []string
	for _, f := range r.Findings {
		kinds = append(kinds, string(f.Kind))
		switch f.Kind {
		case report.DeadHolder:
			if f.Holder == nil || f.Holder.Host != "host-c" || f.Lock != "z" {
				t.Errorf("dead-holder %+v; want host-c's hold of z", f)
			}
		case report.Cycle:
			hosts := map[string]bool{}
			for _, s := range f.Cycle {
				hosts[s.Host] = true
			}
			if !hosts["host-a"] || !hosts["host-b"] || len(f.Cycle) != 2 {
				t.Errorf("cycle %+v; want host-a and host-b", f.Cycle)
			}
		}
	}
	if got := strings.Join(kinds, " "); got != "dead-holder cycle" {
		t.Errorf("findings %s; want dead-holder cycle", got)
	}
	cancel()
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a Lock of the cycle returned nil after its context ended")
		}
	}
}

// serverClient starts an embedded etcd for the test and returns it and a
// client of it; both end with the test.
func serverClient(t *testing.T) (*embedded.Server, *clientv3.Client) {
	t.Helper()
	srv, err := embedded.Start(filepath.Join(t.TempDir(), "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return srv, cli
}
