package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockwatch/lockwatch/internal/report"
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
	p, _ := Prefix(e.run)
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	theirs := concurrency.NewMutex(s, keys{p}.lockPrefix("q"))
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
