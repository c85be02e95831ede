package etcdsrc_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdtest"
	"github.com/lockwatch/lockwatch/report"
)

// TestForeignLocks: locks lockwatch did not take, held and awaited with
// etcd's own concurrency.Mutex (the lock `etcdctl lock NAME` takes: the
// same code, on prefix NAME; no etcdctl binary is needed), each session
// with a lease of its own: attach on etcd://HOST:PORT/?lock=A&lock=B names
// each lock's holder session, its key, token and lease, the waiters in
// order, since which revision it is held, and the cycle of two sessions
// each holding one lock and waiting in the other, from leases alone; and an
// election (concurrency.Election, as `etcdctl elect`): the leader holds.
func TestForeignLocks(t *testing.T) {
	srv, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	session := func() *concurrency.Session {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1, s2, s3 := session(), session(), session()
	a1, b2 := concurrency.NewMutex(s1, "app/A"), concurrency.NewMutex(s2, "app/B")
	if err := a1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// s3 waits for A, then s1 for B and s2 for A: a cycle s1 -> B -> s2 -> A -> s1.
	errs := make(chan error, 4)
	wait := func(s *concurrency.Session, pfx string) {
		go func() { errs <- concurrency.NewMutex(s, pfx).Lock(ctx) }()
	}
	wait(s3, "app/A")
	etcdtest.WaitKeys(t, cli, "app/A/", 2)
	wait(s1, "app/B")
	wait(s2, "app/A")
	etcdtest.WaitKeys(t, cli, "app/A/", 3)
	etcdtest.WaitKeys(t, cli, "app/B/", 2)

	url := etcdsrc.LockURL(srv.Endpoints(), []string{"app/A", "app/B"})
	var out, errw strings.Builder
	err := etcdcli.Main(ctx, []string{"attach", url}, &out, &errw)
	if ee, ok := err.(*etcdcli.ExitError); !ok || ee.Code != 3 {
		t.Fatalf("attach %s: %v; want exit 3 (a cycle)\n%s%s", url, err, out.String(), errw.String())
	}
	text := out.String()
	t.Logf("attach %s:\n%s", url, text)
	for _, want := range []string{
		"CYCLE",
		"holder key",
		"app/A/" + leaseHex(s1),
		"token",
		"held since",
		"when its key was created (it was first)",
		"waiters (lease@revision, in order)",
		leaseHex(s3) + "@", // s3 queued before s2 in A
	} {
		if !strings.Contains(text, want) {
			t.Errorf("attach output lacks %q:\n%s", want, text)
		}
	}
	if i, j := strings.Index(text, leaseHex(s3)+"@"), strings.LastIndex(text, leaseHex(s2)+"@"); i < 0 || j < i {
		t.Errorf("waiters of A not in queue order (s3 %x, then s2 %x):\n%s", s3.Lease(), s2.Lease(), text)
	}
	r, err := report.Diagnose(ctx, etcdsrc.PrefixSources(cli, []string{"app/A", "app/B"}), report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cyc *report.Finding
	for i := range r.Findings {
		if r.Findings[i].Kind == report.Cycle {
			cyc = &r.Findings[i]
		}
	}
	if cyc == nil || len(cyc.Cycle) != 2 {
		t.Fatalf("findings %+v; want a cycle of two sessions", r.Findings)
	}
	got := map[uint64]string{}
	for _, st := range cyc.Cycle {
		got[st.Start] = st.WaitsFor
	}
	if got[uint64(s1.Lease())] != "app/B" || got[uint64(s2.Lease())] != "app/A" {
		t.Errorf("cycle %+v; want session %x waiting for app/B, %x for app/A", cyc.Cycle, s1.Lease(), s2.Lease())
	}
	// An election: the leader holds, the other candidate waits.
	e1, e2 := concurrency.NewElection(s1, "app/E"), concurrency.NewElection(s3, "app/E")
	if err := e1.Campaign(ctx, "leader-1"); err != nil {
		t.Fatal(err)
	}
	go func() { errs <- e2.Campaign(ctx, "standby-3") }()
	etcdtest.WaitKeys(t, cli, "app/E/", 2)
	r, err = report.Diagnose(ctx, etcdsrc.PrefixSources(cli, []string{"app/E"}), report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Locks) != 1 || r.Locks[0].Holder == nil || r.Locks[0].Holder.Start != uint64(s1.Lease()) || r.Locks[0].Waiting != 1 {
		t.Errorf("election app/E: %+v; want the leader (lease %x) holding, one candidate waiting", r.Locks, s1.Lease())
	}
	cancel()
}

func leaseHex(s *concurrency.Session) string { return fmt.Sprintf("%x", int64(s.Lease())) }

// TestForeignStuckHolder: an etcdreg lock's prefix, shared with etcd's
// own concurrency.Mutex, attached as a foreign lock
// (etcd://HOST:PORT/?lock=/lockwatch/RUN/lock/NAME): the etcdreg holder,
// which holds it longer than --stuck-after while an etcdreg waiter waits
// as long (a concurrency.Mutex session waits between them), is a
// stuck-holder, named by its record (host, pid, goroutine), with its live
// stack, asked through etcd, and the etcdreg waiter's; the session is
// named by its lease.
func TestForeignStuckHolder(t *testing.T) {
	srv, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(host string) *etcdreg.Mutex {
		r, err := etcdreg.Open(ctx, cli, "shared", etcdreg.Options{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		m, err := r.Mutex("q")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	holder, waiter := open("host-a"), open("host-b")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	errs := make(chan error, 2)
	go func() { errs <- concurrency.NewMutex(s, holder.Prefix()).Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, holder.Prefix()+"/", 2)
	go func() { errs <- waiter.Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, holder.Prefix()+"/", 3)

	const stuckAfter = 100 * time.Millisecond
	src := etcdsrc.PrefixSources(cli, []string{holder.Prefix()})
	var r *report.Report
	deadline := time.Now().Add(time.Minute)
	for {
		r, err = report.Diagnose(ctx, src, report.Options{StuckAfter: stuckAfter, ProbeTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Findings) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(stuckAfter) // until the hold and the wait are older than stuckAfter
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != report.StuckHolder {
		t.Fatalf("findings %+v; want one stuck-holder", r.Findings)
	}
	f := r.Findings[0]
	if h := f.Holder; h.Host != "host-a" || h.PID != os.Getpid() {
		t.Errorf("stuck holder %+v; want pid %d on host-a (its etcdreg record)", h, os.Getpid())
	}
	var live, waiterStack bool
	for _, st := range r.Stacks {
		if st.Role == "holder" && st.Host == "host-a" && st.Source == "probe-text" {
			live = true
		}
		if st.Role == "waiter" && st.Host == "host-b" {
			waiterStack = true
		}
	}
	if !live || !waiterStack {
		t.Errorf("stacks %+v; want the holder's live stack (probe-text, through etcd) and the etcdreg waiter's", r.Stacks)
	}

	// The same through lockwatch-etcd's attach of the prefix.
	url := etcdsrc.LockURL(srv.Endpoints(), []string{holder.Prefix()})
	var out, errw strings.Builder
	err = etcdcli.Main(ctx, []string{"attach", "--stuck-after", stuckAfter.String(), url}, &out, &errw)
	if ee, ok := err.(*etcdcli.ExitError); !ok || ee.Code != 3 {
		t.Fatalf("attach %s: %v; want exit 3 (a stuck holder)\n%s%s", url, err, out.String(), errw.String())
	}
	t.Logf("attach %s:\n%s", url, out.String())
	for _, want := range []string{"STUCK-HOLDER", "host-a/" + strconv.Itoa(os.Getpid()), "lease-" + leaseHex(s), "STACKS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("attach output lacks %q:\n%s", want, out.String())
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
}
