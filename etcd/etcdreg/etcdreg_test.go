package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/internal/report"
)

func TestMutualExclusion(t *testing.T) {
	e := newEnv(t)
	const procs, n = 3, 20
	var cs []*child
	for i := range procs {
		cs = append(cs, e.start("counter", "host-"+strconv.Itoa(i), envN+"="+strconv.Itoa(n)))
	}
	for _, c := range cs {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("pid %d: %v", c.pid, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(e.dir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != strconv.Itoa(procs*n) {
		t.Errorf("counter = %s; want %d", got, procs*n)
	}
	s := e.waitFor("snapshot", func(*Snapshot) bool { return true })
	if l := lockOf(s, "count"); l.Owner != nil || l.Holder != nil {
		t.Errorf("lock count after every process unlocked and closed: owner %+v holder %+v; want free", l.Owner, l.Holder)
	}
	acq := 0
	for _, ev := range s.Events {
		if ev.Kind == EventAcquire && ev.Lock == "count" {
			acq++
		}
	}
	if acq != procs*n {
		t.Errorf("%d acquire events; want %d", acq, procs*n)
	}
	checkNeverUnknown(t, e, "count", s.Revision)
}

// checkNeverUnknown reads lock name's keys at every revision of the run up
// to upto, and fails if at any revision the owner key exists without a
// holder record naming the same goroutine: the acquiring transaction must
// write both at once.
func checkNeverUnknown(t *testing.T, e *testEnv, name string, upto int64) {
	t.Helper()
	p, _ := Prefix(e.run)
	k := keys{p}
	holds := 0
	for rev := int64(1); rev <= upto; rev++ {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		resp, err := e.cli.Get(ctx, k.lockDir(name), clientv3.WithPrefix(), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		state := map[string][]byte{}
		for _, kv := range resp.Kvs {
			state[string(kv.Key)] = kv.Value
		}
		owner, ok := state[k.owner(name)]
		if !ok {
			continue
		}
		holds++
		var o OwnerRecord
		var h HolderRecord
		if decode(owner, &o) != nil || decode(state[k.holder(name)], &h) != nil || o.ID != h.ID || o.Goroutine != h.Goroutine {
			t.Fatalf("revision %d: owner %s with holder record %q", rev, owner, state[k.holder(name)])
		}
	}
	if holds == 0 {
		t.Fatalf("no revision up to %d with the lock held", upto)
	}
}

// TestKilledHolder: a holder SIGKILLed; the dead-holder finding, first
// proved on the holder's host by pid and start time, then by its lease's
// expiry alone; Stall waiters keep waiting after etcd frees the owner key;
// a Recover waiter takes the lock with ErrOwnerDead.
func TestKilledHolder(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	b := e.start("cmd", "host-b", envTTL+"=2")
	a.send("lock q")
	a.expect("held q")
	b.send("lock q")
	e.waitFor("waiter on q", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killed := time.Now()

	// Proved on its host, by pid and start time, while its lease still runs.
	r := e.diagnose("host-a", 0, false)
	f, ok := findingOf(r, report.DeadHolder)
	if !ok {
		t.Fatalf("findings %+v; want dead-holder", r.Findings)
	}
	if f.Holder.PID != a.pid || f.Holder.Host != "host-a" || f.Holder.Alive || f.Holder.State != "dead" || f.Holder.Death != "gone" {
		t.Errorf("dead-holder names %+v; want pid %d on host-a, dead (gone: proved in /proc)", f.Holder, a.pid)
	}
	if len(f.Waiters) != 1 || f.Waiters[0].PID != b.pid || f.Waiters[0].Host != "host-b" {
		t.Errorf("waiters %+v; want pid %d on host-b", f.Waiters, b.pid)
	}
	// The next step says when etcd frees the lock: within the lease's TTL.
	if m := regexp.MustCompile(`etcd deletes its owner key when its lease [0-9a-f]+ expires, in (\S+) at most`).FindStringSubmatch(f.Next); m == nil {
		if lockRow(r, "q").State != "lease-expired" { // unless the lease ran out already
			t.Errorf("next %q; want the time until etcd frees the lock", f.Next)
		}
	} else if left, err := time.ParseDuration(m[1]); err != nil || left > 2*time.Second {
		t.Errorf("next %q: lease left %s; want 0..2s", f.Next, m[1])
	}

	// etcd frees the owner key when the lease expires.
	e.waitFor("expiry of the holder's lease", func(s *Snapshot) bool { return lockOf(s, "q").Owner == nil })
	t.Logf("etcd deleted the dead holder's owner key %v after its SIGKILL (TTL 2s)", time.Since(killed).Round(10*time.Millisecond))

	// Proved from etcd alone: its lease expired with the record held.
	r = e.diagnose("reader", 0, false)
	f, ok = findingOf(r, report.DeadHolder)
	if !ok {
		t.Fatalf("findings %+v; want dead-holder by lease expiry", r.Findings)
	}
	if f.Holder.PID != a.pid || f.Holder.State != "expired" || f.Holder.Death != "lease-expired" || !strings.Contains(f.Summary, "expired while its record") {
		t.Errorf("dead-holder %+v, summary %q; want pid %d, its lease expired while its record holds the lock", f.Holder, f.Summary, a.pid)
	}
	if st := lockRow(r, "q").State; st != "lease-expired" {
		t.Errorf("lock q is %q; want lease-expired", st)
	}
	// Stall: b still waits, and the record still names the dead holder.
	s := e.waitFor("the expiry noted by the waiter", func(s *Snapshot) bool { return lockOf(s, "q").ExpiryNoted })
	if h := lockOf(s, "q").Holder; h == nil || h.ID.PID != a.pid {
		t.Errorf("holder record %+v; want pid %d's", h, a.pid)
	}
	b.silent()

	// Recover: c takes it, with ErrOwnerDead; on its release, b gets it.
	c := e.start("cmd", "host-c", envPolicy+"=recover")
	c.send("lock q")
	c.expect("ownerdead q")
	b.silent()
	c.send("unlock q")
	c.expect("unlocked q")
	b.expect("held q")
	s = e.waitFor("events", func(*Snapshot) bool { return true })
	var kinds []string
	for _, ev := range s.Events {
		// A stuck event says that a wait lasted StuckAfter (10s): on a
		// loaded machine b's may, or may not; it is not what this test is
		// about.
		if ev.Lock == "q" && ev.Kind != EventStuck {
			kinds = append(kinds, string(ev.Kind)+":"+ev.ID.Host)
		}
	}
	want := "acquire:host-a wait:host-b lease-expired:host-a recovered:host-c release:host-c acquire:host-b"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("events of q: %s\nwant %s", got, want)
	}
}

// TestLostLock: a holder SIGSTOPped until its lease expires; a second
// process takes the lock (Recover); the first resumes inside its critical
// section: lost-lock, naming both.
func TestLostLock(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	a.send("lock q")
	a.expect("held q")
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	e.waitFor("expiry of the stopped holder's lease", func(s *Snapshot) bool { return lockOf(s, "q").Owner == nil })
	b := e.start("cmd", "host-b", envPolicy+"=recover")
	b.send("lock q")
	b.expect("ownerdead q")
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	e.waitFor("lost record of pid a", func(s *Snapshot) bool { return len(s.Lost) == 1 && s.Lost[0].ID.PID == a.pid })

	for _, local := range []string{"reader", "host-a"} {
		r := e.diagnose(local, 0, false)
		f, ok := findingOf(r, report.LostLock)
		if !ok {
			t.Fatalf("local host %s: findings %+v; want lost-lock", local, r.Findings)
		}
		if f.Holder.PID != a.pid || f.Holder.Host != "host-a" || !f.Holder.Alive {
			t.Errorf("lost-lock names %+v; want pid %d on host-a, alive", f.Holder, a.pid)
		}
		if now := lockRow(r, "q").Holder; now == nil || now.PID != b.pid || now.Host != "host-b" ||
			!strings.Contains(f.Summary, fmt.Sprintf("pid %d on host-b", b.pid)) {
			t.Errorf("lost-lock %q, q held by %+v; want pid %d on host-b holding it now", f.Summary, now, b.pid)
		}
		if _, dead := findingOf(r, report.DeadHolder); dead {
			t.Errorf("local host %s: a dead-holder finding for a live process: %+v", local, r.Findings)
		}
	}
	a.send("unlock q")
	a.expect("lost q")
	b.send("unlock q")
	b.expect("unlocked q")
	s := e.waitFor("the lost record gone", func(s *Snapshot) bool { return len(s.Lost) == 0 })
	if l := lockOf(s, "q"); l.Owner != nil || l.Holder != nil {
		t.Errorf("q after both unlocked: %+v; want free", l)
	}
}

// TestCycle: two hosts, each holding the lock the other waits for.
func TestCycle(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a")
	b := e.start("cmd", "host-b")
	a.send("lock x")
	a.expect("held x")
	b.send("lock y")
	b.expect("held y")
	a.send("nest x y")
	b.send("nest y x")
	e.waitFor("two waiters", func(s *Snapshot) bool { return len(s.Waiters) == 2 })
	r := e.diagnose("reader", 0, true)
	f, ok := findingOf(r, report.Cycle)
	if !ok {
		t.Fatalf("findings %+v; want cycle", r.Findings)
	}
	if len(f.Cycle) != 2 {
		t.Fatalf("cycle %+v; want 2 steps", f.Cycle)
	}
	got := map[string]string{}
	for _, st := range f.Cycle {
		got[st.Host] = st.WaitsFor
		if st.Where == nil || !strings.Contains(st.Where.Func, "holdUntilTold") {
			t.Errorf("step %s/%d: where %+v; want holdUntilTold", st.Host, st.PID, st.Where)
		}
	}
	if got["host-a"] != "y" || got["host-b"] != "x" {
		t.Errorf("cycle waits: %v; want host-a for y, host-b for x", got)
	}
	// Each goroutine's live stack came from its process, through etcd.
	live := map[string]bool{}
	for _, s := range r.Stacks {
		if s.Source == "probe-text" && len(s.Frames) > 0 {
			live[s.Host] = true
		}
	}
	if !live["host-a"] || !live["host-b"] || len(r.Notes) != 0 {
		t.Errorf("live stacks from %v, notes %q; want host-a's and host-b's, no note", live, r.Notes)
	}
	if _, ok := findingOf(r, report.StuckHolder); ok {
		t.Errorf("a stuck-holder besides the cycle: %+v", r.Findings)
	}
}

// TestStuckHolder: a live holder whose lease is fresh but whose critical
// section does not end; its current stack comes through etcd.
func TestStuckHolder(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a")
	b := e.start("cmd", "host-b")
	a.send("lock q")
	a.expect("held q")
	b.send("lock q")
	e.waitFor("waiter on q", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	r := e.diagnose("reader", time.Nanosecond, true)
	f, ok := findingOf(r, report.StuckHolder)
	if !ok {
		t.Fatalf("findings %+v; want stuck-holder", r.Findings)
	}
	if f.Holder.PID != a.pid || f.Holder.Host != "host-a" || !f.Holder.Alive {
		t.Errorf("stuck holder %+v; want pid %d on host-a, alive", f.Holder, a.pid)
	}
	if !strings.Contains(f.Doing, "holdUntilTold") || !strings.HasPrefix(f.Doing, "select in ") {
		t.Errorf("doing %q; want its goroutine in holdUntilTold, in select (notes %v)", f.Doing, r.Notes)
	}
	if len(r.Findings) != 1 {
		t.Errorf("findings %+v; want only stuck-holder", r.Findings)
	}
}

// TestStoreRestart: etcd stopped mid-run: the reader says it is
// unreachable; restarted, the records are all there and the holder, whose
// lease etcd extended on restart, still holds and releases normally.
// The holder must renew its lease within its TTL of the restart: at 5 s a
// run at load average 16 lost it (Unlock said "lost q", as it must when the
// lease is gone); 60 s keeps the test about the restart, not the load.
func TestStoreRestart(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=60")
	a.send("lock q")
	a.expect("held q")
	before := e.waitFor("holder record", func(s *Snapshot) bool { return lockOf(s, "q").Owner != nil })

	e.srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := Read(ctx, e.cli, e.run)
	cancel()
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Read with etcd stopped: %v; want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "check that the cluster runs") {
		t.Errorf("error %q does not say what to do", err)
	}
	if err := e.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	after := e.waitFor("the run readable again", func(*Snapshot) bool { return true })
	lb, la := lockOf(before, "q"), lockOf(after, "q")
	if la.Holder == nil || la.HolderRev != lb.HolderRev || la.Owner == nil {
		t.Fatalf("after restart q is %+v; want the same holder record (revision %d) and owner", la, lb.HolderRev)
	}
	if len(after.Events) < len(before.Events) || len(after.Processes) != len(before.Processes) {
		t.Errorf("after restart: %d events, %d processes; before: %d, %d", len(after.Events), len(after.Processes), len(before.Events), len(before.Processes))
	}
	a.send("unlock q")
	a.expect("unlocked q")
}
