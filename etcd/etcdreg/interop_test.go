package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockwatch/lockwatch/report"
)

// TestInteropConcurrencyMutex: etcdreg's Mutex and etcd's own
// concurrency.Mutex (the lock `etcdctl lock` takes) on the same prefix
// exclude each other both ways, and waiters of both kinds are served in
// queue order.
func TestInteropConcurrencyMutex(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a")
	b := e.start("cmd", "host-b")
	p, _ := Prefix(e.run)
	prefix := keys{p}.lockPrefix("q")
	ctx := context.Background()
	session := func() *concurrency.Session {
		s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(10))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	// etcdreg holds: concurrency.Mutex cannot take it, and waits.
	a.send("lock q")
	a.expect("held q")
	theirs := concurrency.NewMutex(session(), prefix)
	if err := theirs.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("concurrency.Mutex.TryLock while etcdreg holds: %v; want ErrLocked", err)
	}
	got := make(chan error, 1)
	go func() { got <- theirs.Lock(ctx) }()
	e.waitFor("concurrency.Mutex queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	// An etcdreg waiter queued after it waits behind it.
	b.send("lock q")
	e.waitFor("b queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 2 })
	select {
	case err := <-got:
		t.Fatalf("concurrency.Mutex.Lock returned %v while etcdreg holds the lock", err)
	default:
	}
	a.send("unlock q")
	a.expect("unlocked q")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// concurrency.Mutex holds: etcdreg's b, queued behind it, still waits;
	// a new etcdreg TryLock fails.
	s := e.waitFor("the foreign holder", func(s *Snapshot) bool {
		l := lockOf(s, "q")
		return l.Holder != nil && l.Holder.Record == nil
	})
	if h := lockOf(s, "q").Holder; h.Key != theirs.Key() {
		t.Errorf("holder %+v; want the concurrency.Mutex's key %s", h, theirs.Key())
	}
	b.silent()
	a.send("try q")
	a.expect("busy q")
	if err := theirs.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	b.expect("held q")
	// etcdreg holds again: a second concurrency.Mutex waits for it.
	other := concurrency.NewMutex(session(), prefix)
	go func() { got <- other.Lock(ctx) }()
	e.waitFor("concurrency.Mutex queued again", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	b.send("unlock q")
	b.expect("unlocked q")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestForeignTakesFromExpired: an etcdreg holder SIGSTOPped past its TTL
// while a concurrency.Mutex waits behind it: by etcd's rule the
// concurrency.Mutex takes the lock when the holder's key expires; the
// report says so at once: lost-lock, the stopped holder possibly inside,
// the session holding it now.
func TestForeignTakesFromExpired(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	a.send("lock q")
	a.expect("held q")
	s, theirs := foreignMutex(t, e, "q")
	got := make(chan error, 1)
	go func() { got <- theirs.Lock(context.Background()) }()
	e.waitFor("concurrency.Mutex queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	r := e.diagnose("reader", 0, false)
	f, ok := findingOf(r, report.LostLock)
	if !ok {
		t.Fatalf("findings %+v; want lost-lock", r.Findings)
	}
	if f.Holder.Host != "host-a" || !strings.Contains(f.Summary, "may still be running") ||
		!strings.Contains(f.Summary, fmt.Sprintf("lease-%x", int64(s.Lease()))) {
		t.Errorf("lost-lock %+v: %q; want host-a's holder possibly inside, session %x holding it now", f.Holder, f.Summary, s.Lease())
	}
	if err := theirs.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestExpiredWaiterBehindForeign: an etcdreg waiter whose lease expires
// while a concurrency.Mutex holds the lock, with no etcdreg waiter behind
// it to notice, leaves a shadow that never held: once the lock is free,
// and once another contender queues, it reads as no holder at all, and an
// etcdreg Lock takes the lock instead of stalling behind it.
func TestExpiredWaiterBehindForeign(t *testing.T) {
	e := newEnv(t)
	w := e.start("cmd", "host-w", envTTL+"=2")
	_, theirs := foreignMutex(t, e, "q")
	if err := theirs.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.send("lock q")
	e.waitFor("w waiting", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	e.waitFor("w's key gone with its lease", func(s *Snapshot) bool { return waitersOn(s, "q") == 0 })
	if err := theirs.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := e.waitFor("q's foreign holder gone", func(s *Snapshot) bool {
		h := lockOf(s, "q").Holder
		return h == nil || h.Record != nil
	})
	if l := lockOf(snap, "q"); l.Holder != nil {
		t.Errorf("q %+v, holder %+v: a waiter that never held read as a holder", l, l.Holder)
	}
	if r := e.diagnose("reader", 0, false); len(r.Findings) != 0 {
		t.Errorf("findings %+v on a free lock; want none", r.Findings)
	}
	b := e.start("cmd", "host-b")
	b.send("try q")
	b.expect("held q")
	b.expect("unlocked q")
}

// foreignMutex is a concurrency.Mutex, on a session of its own (TTL 10 s,
// closed at the test's end), on lock name of the test's run.
func foreignMutex(t *testing.T, e *testEnv, name string) (*concurrency.Session, *concurrency.Mutex) {
	t.Helper()
	p, _ := Prefix(e.run)
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, concurrency.NewMutex(s, keys{p}.lockPrefix(name))
}
