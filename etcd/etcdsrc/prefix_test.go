package etcdsrc_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdtest"
	"github.com/lockwatch/lockwatch/lockstate"
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
	s1, s2, s3 := newSession(t, cli, 5), newSession(t, cli, 5), newSession(t, cli, 5)
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

// newSession opens a session of etcd's own lock with a lease of ttl
// seconds, closed at the test's end.
func newSession(t *testing.T, cli *clientv3.Client, ttl int) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sharedQ opens, as host, a registry of run "shared", closed at the end of
// the test, and returns its lock "q".
func sharedQ(ctx context.Context, t *testing.T, cli *clientv3.Client, host string) *etcdreg.Mutex {
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
	holder, waiter := sharedQ(ctx, t, cli, "host-a"), sharedQ(ctx, t, cli, "host-b")
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

// TestForeignStuckWatched: a lock whose contenders are all sessions of
// etcd's own lock (concurrency.Mutex, as etcdctl lock takes it) keeps no
// time: attach says since which revision it is held, the time unknown, and
// finds no stuck-holder; a watch (Seen, here on a clock the test moves)
// finds it once it has itself seen the same holder key with a waiter for
// longer than --stuck-after, worded as a lower bound, and starts again
// for the next holder.
func TestForeignStuckWatched(t *testing.T) {
	_, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1, s2, s3 := newSession(t, cli, 10), newSession(t, cli, 10), newSession(t, cli, 10)
	m1 := concurrency.NewMutex(s1, "app/S")
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- concurrency.NewMutex(s2, "app/S").Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, "app/S/", 2)

	opts := report.Options{StuckAfter: 10 * time.Second}
	stuck := func(r *report.Report) *report.Finding {
		for i := range r.Findings {
			if r.Findings[i].Kind == report.StuckHolder {
				return &r.Findings[i]
			}
		}
		return nil
	}
	r, err := report.Diagnose(ctx, etcdsrc.PrefixSources(cli, []string{"app/S"}), opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := stuck(r); f != nil {
		t.Errorf("attach: %s; want no stuck-holder (etcd keeps no time)", f.Summary)
	}
	if d := factsText(r); !strings.Contains(d, "held since=revision") || !strings.Contains(d, "etcd keeps no time per revision") {
		t.Errorf("attach: lock details %q; want since which revision, and that the time is unknown", d)
	}

	t0 := time.Now()
	clock := t0
	seen := etcdsrc.NewSeen(func() time.Time { return clock })
	src := etcdsrc.WatchedPrefixSources(cli, []string{"app/S"}, seen)
	read := func(at time.Duration) *report.Report {
		t.Helper()
		clock = t0.Add(at)
		r, err := report.Diagnose(ctx, src, opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if f := stuck(read(0)); f != nil {
		t.Errorf("watch, first reading: %s; want no stuck-holder", f.Summary)
	}
	if f := stuck(read(9 * time.Second)); f != nil {
		t.Errorf("watch, seen 9s: %s; want no stuck-holder before 10s", f.Summary)
	}
	r = read(11 * time.Second)
	f := stuck(r)
	if f == nil {
		t.Fatalf("watch, seen 11s: findings %+v; want a stuck-holder", r.Findings)
	}
	if f.Holder == nil || f.Holder.Start != uint64(s1.Lease()) || !strings.Contains(f.Summary, "for at least 11s (at least since lockwatch started watching it)") ||
		!strings.Contains(f.Next, "no pid is known") {
		t.Errorf("stuck-holder %+v; want session %x, held at least 11s since lockwatch started watching", f, s1.Lease())
	}
	if d := factsText(r); !strings.Contains(d, "seen held since=") {
		t.Errorf("lock details %q; want since when lockwatch has seen it held", d)
	}

	// The next holder is timed from when it was seen holding, not waiting.
	go func() { errs <- concurrency.NewMutex(s3, "app/S").Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, "app/S/", 3)
	read(12 * time.Second)
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if f := stuck(read(20 * time.Second)); f != nil {
		t.Errorf("watch, s2 seen holding from 20s: %s; want no stuck-holder at once", f.Summary)
	}
	// s3 has waited 11s, s2 held 3s (it waited before).
	if f := stuck(read(23 * time.Second)); f != nil {
		t.Errorf("watch, s2 seen holding 3s: %s; want no stuck-holder (it was seen waiting before, not holding)", f.Summary)
	}
	if f := stuck(read(31 * time.Second)); f == nil || f.Holder.Start != uint64(s2.Lease()) {
		t.Errorf("watch, s2 seen holding 11s with s3 waiting: %+v; want s2 stuck", f)
	}
	cancel()
}

// factsText is the facts of the report's locks, NAME=VALUE, one a line.
func factsText(r *report.Report) string {
	var b strings.Builder
	for _, l := range r.Locks {
		for _, f := range l.Facts {
			fmt.Fprintf(&b, "%s=%s\n", f.Name, f.Value)
		}
	}
	return b.String()
}

// TestRunForeignStuckWatched: the same in a run: an etcdreg lock whose
// contenders are all sessions of etcd's own lock on its prefix is timed by
// a watch of the run (Source.Seen), not by attach.
func TestRunForeignStuckWatched(t *testing.T) {
	_, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mu := etcdtest.Mutex(t, cli, "fw", "host-r", "q")
	s1, s2 := newSession(t, cli, 10), newSession(t, cli, 10)
	if err := concurrency.NewMutex(s1, mu.Prefix()).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = concurrency.NewMutex(s2, mu.Prefix()).Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, mu.Prefix()+"/", 2)
	opts := report.Options{StuckAfter: 10 * time.Second}
	stuck := func(src lockstate.Source) *report.Finding {
		t.Helper()
		r, err := report.Diagnose(ctx, report.Sources{Locks: []lockstate.Source{src}, Host: report.LocalHost{}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Findings {
			if r.Findings[i].Kind == report.StuckHolder {
				return &r.Findings[i]
			}
		}
		return nil
	}
	if f := stuck(etcdsrc.Source{Client: cli, Run: "fw"}); f != nil {
		t.Errorf("attach: %s; want no stuck-holder (etcd keeps no time)", f.Summary)
	}
	t0 := time.Now()
	clock := t0
	src := etcdsrc.Source{Client: cli, Run: "fw", Seen: etcdsrc.NewSeen(func() time.Time { return clock })}
	if f := stuck(src); f != nil {
		t.Errorf("watch, first reading: %s; want no stuck-holder", f.Summary)
	}
	clock = t0.Add(11 * time.Second)
	f := stuck(src)
	if f == nil || f.Holder.Start != uint64(s1.Lease()) || !strings.Contains(f.Summary, "at least since lockwatch started watching it") {
		t.Fatalf("watch, seen 11s: %+v; want session %x stuck, held at least since lockwatch started watching", f, s1.Lease())
	}
}

// TestForeignWaitersOrder: on an etcdreg lock's prefix, an etcdreg waiter
// queued before a session of etcd's own lock (which has no time) is listed
// first in WAITERS, as in the queue (create revision) and as the lock's
// details say.
func TestForeignWaitersOrder(t *testing.T) {
	srv, cli := serverClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder, waiter := sharedQ(ctx, t, cli, "host-a"), sharedQ(ctx, t, cli, "host-b")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- waiter.Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, holder.Prefix()+"/", 2)
	s := newSession(t, cli, 10)
	go func() { errs <- concurrency.NewMutex(s, holder.Prefix()).Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, holder.Prefix()+"/", 3)

	r, err := report.Diagnose(ctx, etcdsrc.PrefixSources(cli, []string{holder.Prefix()}), report.Options{StuckAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range r.Waiters {
		got = append(got, w.Host)
	}
	if want := []string{"host-b", "lease-" + leaseHex(s)}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("waiters %v; want %v: the etcdreg waiter queued first", got, want)
	}
	// The table, as attach prints it.
	url := etcdsrc.LockURL(srv.Endpoints(), []string{holder.Prefix()})
	var out, errw strings.Builder
	if err := etcdcli.Main(ctx, []string{"attach", url}, &out, &errw); err != nil {
		t.Fatalf("attach %s: %v\n%s%s", url, err, out.String(), errw.String())
	}
	text := out.String()
	waiters := text[strings.Index(text, "WAITERS"):]
	if b, l := strings.Index(waiters, "host-b/"), strings.Index(waiters, "lease-"+leaseHex(s)); b < 0 || l < 0 || b > l {
		t.Errorf("WAITERS lists the session before the etcdreg waiter queued before it:\n%s", text)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
