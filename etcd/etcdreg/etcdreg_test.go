package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/report"
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
	// Every process closed: the run keeps no record of them (bounded
	// whatever the number of lifetimes): its meta key only.
	p, _ := Prefix(e.run)
	resp, err := e.cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, kv := range resp.Kvs {
		left = append(left, strings.TrimPrefix(string(kv.Key), p))
	}
	if got := strings.Join(left, " "); got != "meta" {
		t.Errorf("keys left after %d lifetimes: %s; want meta only", procs, got)
	}
	s := &Snapshot{Revision: resp.Header.Revision}
	checkNeverUnknown(t, e, "count", s.Revision)
}

// checkNeverUnknown reads lock name's keys at every revision of the run up
// to upto, and fails if at any revision the first contender key (the
// owner, by etcd's rule) stands without its shadow, or with a shadow whose
// record is not its own: the queueing transaction must write both at once,
// and the release delete both. (A waiter's shadow is empty until the
// release that makes it the owner, or the owner itself, writes its record:
// its Lock has not returned until then.)
func checkNeverUnknown(t *testing.T, e *testEnv, name string, upto int64) {
	t.Helper()
	p, _ := Prefix(e.run)
	k := keys{p}
	holds := 0
	for rev := int64(1); rev <= upto; rev++ {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		resp, err := e.cli.Txn(ctx).Then(
			clientv3.OpGet(k.lockDir(name), append(clientv3.WithFirstCreate(), clientv3.WithRev(rev))...),
			clientv3.OpGet(k.shadowDir(name), clientv3.WithPrefix(), clientv3.WithRev(rev)),
		).Commit()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		first := resp.Responses[0].GetResponseRange().Kvs
		if len(first) == 0 {
			continue
		}
		holds++
		found := false
		for _, sh := range resp.Responses[1].GetResponseRange().Kvs {
			var a, b HolderRecord
			if sh.CreateRevision == first[0].CreateRevision && len(sh.Value) == 0 {
				found = true
			}
			if sh.CreateRevision == first[0].CreateRevision && decodeHolder(sh.Value, &a) == nil && decodeHolder(first[0].Value, &b) == nil {
				a.Held, a.Acquired = false, time.Time{} // set on the shadow of an owner
				found = found || a == b
			}
		}
		if !found {
			t.Fatalf("revision %d: owner key %s without its shadow record", rev, first[0].Key)
		}
	}
	if holds == 0 {
		t.Fatalf("no revision up to %d with the lock held", upto)
	}
}

// TestKilledHolder: a holder SIGKILLed; the dead-holder finding, first
// proved on the holder's host by pid and start time, then by its lease's
// expiry alone (worded "dead or cut off from etcd"); the Stall waiter, first
// in line, keeps waiting after etcd deletes the holder's key, and a
// Recover waiter queued behind it waits in order.
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
	if m := regexp.MustCompile(`etcd deletes its key when its lease [0-9a-f]+ expires, in (\S+) at most`).FindStringSubmatch(f.Next); m == nil {
		if lockRow(r, "q").State != "lease-expired" { // unless the lease ran out already
			t.Errorf("next %q; want the time until etcd frees the lock", f.Next)
		}
	} else if left, err := time.ParseDuration(m[1]); err != nil || left > 2*time.Second {
		t.Errorf("next %q: lease left %s; want 0..2s", f.Next, m[1])
	}

	// etcd deletes the holder's key when the lease expires; its shadow
	// record stays.
	e.waitFor("expiry of the holder's lease", func(s *Snapshot) bool { return lockOf(s, "q").Expired })
	t.Logf("etcd deleted the dead holder's key %v after its SIGKILL (TTL 2s)", time.Since(killed).Round(10*time.Millisecond))

	// From etcd alone: its lease expired with the record held: dead or
	// cut off, not proved dead.
	r = e.diagnose("reader", 0, false)
	f, ok = findingOf(r, report.DeadHolder)
	if !ok {
		t.Fatalf("findings %+v; want dead-holder by lease expiry", r.Findings)
	}
	if f.Holder.PID != a.pid || f.Holder.State != "expired" || f.Holder.Death != "lease-expired" ||
		!strings.Contains(f.Summary, "expired while its record") || !strings.Contains(f.Summary, "dead or cut off from etcd") {
		t.Errorf("dead-holder %+v, summary %q; want pid %d, its lease expired while its record holds the lock, dead or cut off", f.Holder, f.Summary, a.pid)
	}
	if st := lockRow(r, "q").State; st != "lease-expired" {
		t.Errorf("lock q is %q; want lease-expired", st)
	}
	// Stall: b waits, first in line, and the record still names the dead
	// holder.
	s := e.waitFor("the expiry noted by the waiter", func(s *Snapshot) bool { return lockOf(s, "q").ExpiryNoted })
	if l := lockOf(s, "q"); l.Holder == nil || l.Holder.Record == nil || l.Holder.Record.ID.PID != a.pid || !l.Stalled || l.Owner() != nil {
		t.Errorf("q is %+v; want pid %d's record holding, b stalled", l, a.pid)
	}
	b.silent()
	// A Recover waiter queued behind the stalled one waits in order.
	c := e.start("cmd", "host-c", envPolicy+"=recover")
	c.send("lock q")
	e.waitFor("c queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 2 })
	c.silent()
	b.silent()
	s = e.waitFor("events", func(*Snapshot) bool { return true })
	var kinds []string
	for _, ev := range s.Events {
		if ev.Lock == "q" && ev.Kind != EventStuck {
			kinds = append(kinds, string(ev.Kind)+":"+ev.ID.Host)
		}
	}
	want := "acquire:host-a wait:host-b lease-expired:host-a wait:host-c"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("events of q: %s\nwant %s", got, want)
	}
}

// TestRecoverKilledHolder: a Recover waiter takes the lock of a SIGKILLed
// holder once its lease expires, with ErrOwnerDead and a larger token;
// the events, with their tokens, say so in order.
func TestRecoverKilledHolder(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	c := e.start("cmd", "host-c", envPolicy+"=recover")
	a.send("lock q")
	ta := token(t, a.expect("held q"))
	c.send("lock q")
	e.waitFor("waiter on q", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	tc := token(t, c.expect("ownerdead q"))
	if tc <= ta {
		t.Errorf("token %d after %d; want it larger", tc, ta)
	}
	// The killed holder is proved dead on its host: no lost-lock for it.
	r := e.diagnose("host-a", 0, false)
	if len(r.Findings) != 0 {
		t.Errorf("findings %+v; want none (the old holder is proved dead)", r.Findings)
	}
	c.send("unlock q")
	c.expect("unlocked q")
	// A release's event is written within flushAfter.
	s := e.waitFor("c's release event", func(s *Snapshot) bool {
		return slices.ContainsFunc(s.Events, func(ev Event) bool { return ev.Kind == EventRelease && ev.Lock == "q" })
	})
	var kinds []string
	for _, ev := range s.Events {
		if ev.Lock == "q" && ev.Kind != EventStuck {
			kinds = append(kinds, fmt.Sprintf("%s:%s#%d", ev.Kind, ev.ID.Host, ev.Token))
		}
	}
	want := fmt.Sprintf("acquire:host-a#%d wait:host-c#0 recovered:host-c#%d release:host-c#%d", ta, tc, tc)
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("events of q: %s\nwant %s", got, want)
	}
}

// token reads the token at the end of a "held q T" line.
func token(t *testing.T, line string) int64 {
	t.Helper()
	f := strings.Fields(line)
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("line %q: no token", line)
	}
	return n
}

// TestLostLock: a holder SIGSTOPped until its lease expires; a second
// process takes the lock (Recover). While the first is still stopped, the
// overlap is reported at once (lost-lock beside the new holder): proved
// alive on its own host, only possible from another. Resumed, its Done
// fires, its fenced write is refused, and its Unlock says the lock was
// lost.
func TestLostLock(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	a.send("lock q")
	ta := token(t, a.expect("held q"))
	a.send("write q")
	a.expect("wrote q")
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	e.waitFor("expiry of the stopped holder's lease", func(s *Snapshot) bool { return lockOf(s, "q").Expired })
	b := e.start("cmd", "host-b", envPolicy+"=recover")
	b.send("lock q")
	tb := token(t, b.expect("ownerdead q"))
	if tb <= ta {
		t.Errorf("token %d after %d; want it larger", tb, ta)
	}
	b.send("write q")
	b.expect("wrote q")

	// a is still stopped: the overlap is reported now.
	for _, tc := range []struct {
		local string
		alive bool
		says  string
	}{
		{"host-a", true, "is still running"},
		{"reader", false, "may still be running"},
	} {
		r := e.diagnose(tc.local, 0, false)
		f, ok := findingOf(r, report.LostLock)
		if !ok {
			t.Fatalf("local host %s, a stopped: findings %+v; want lost-lock", tc.local, r.Findings)
		}
		if f.Holder.PID != a.pid || f.Holder.Host != "host-a" || f.Holder.Alive != tc.alive || !strings.Contains(f.Summary, tc.says) {
			t.Errorf("local host %s: lost-lock names %+v: %q; want pid %d on host-a, alive %v, %q", tc.local, f.Holder, f.Summary, a.pid, tc.alive, tc.says)
		}
		if now := lockRow(r, "q").Holder; now == nil || now.PID != b.pid || now.Host != "host-b" ||
			!strings.Contains(f.Summary, fmt.Sprintf("pid %d on host-b", b.pid)) {
			t.Errorf("lost-lock %q, q held by %+v; want pid %d on host-b holding it now", f.Summary, now, b.pid)
		}
		if _, dead := findingOf(r, report.DeadHolder); dead {
			t.Errorf("local host %s: a dead-holder finding for a process not proved dead: %+v", tc.local, r.Findings)
		}
	}

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	a.expect("done q")
	a.send("write q")
	a.expect("refused q")
	e.waitFor("a's new lease", func(s *Snapshot) bool {
		for _, p := range s.Processes {
			if p.ID.PID == a.pid && p.Alive && p.Lease != p.AliveLease {
				return false
			}
			if p.ID.PID == a.pid && p.Alive {
				return p.Lease == p.AliveLease
			}
		}
		return false
	})
	r := e.diagnose("reader", 0, false)
	if f, ok := findingOf(r, report.LostLock); !ok || f.Holder.PID != a.pid || !f.Holder.Alive {
		t.Errorf("a resumed: findings %+v; want lost-lock naming pid %d, alive", r.Findings, a.pid)
	}
	a.send("unlock q")
	a.expect("lost q")
	b.send("unlock q")
	b.expect("unlocked q")
	s := e.waitFor("the lost record gone", func(s *Snapshot) bool { return len(s.Lost) == 0 })
	if l := lockOf(s, "q"); l.Holder != nil {
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
	before := e.waitFor("holder record", func(s *Snapshot) bool { return lockOf(s, "q").Owner() != nil })

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
	if la.Holder == nil || la.Expired || la.Holder.Token != lb.Holder.Token {
		t.Fatalf("after restart q is %+v; want the same holder (token %d)", la, lb.Holder.Token)
	}
	if len(after.Events) < len(before.Events) || len(after.Processes) != len(before.Processes) {
		t.Errorf("after restart: %d events, %d processes; before: %d, %d", len(after.Events), len(after.Processes), len(before.Events), len(before.Processes))
	}
	a.send("unlock q")
	a.expect("unlocked q")
}

// TestStalledWaiterTakesLostRelease: a Stall waiter first in line behind a
// holder whose lease expired (SIGSTOP) waits; when the holder resumes and
// unlocks (ErrLockLost), the waiter takes the lock, and its shadow reads as
// a holder's again (not a stalled waiter's), so that its own expiry would
// be seen as a holder's.
func TestStalledWaiterTakesLostRelease(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a", envTTL+"=2")
	b := e.start("cmd", "host-b")
	a.send("lock q")
	a.expect("held q")
	b.send("lock q")
	e.waitFor("waiter on q", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	e.waitFor("b stalled behind the expired holder", func(s *Snapshot) bool {
		l := lockOf(s, "q")
		return l.ExpiryNoted && l.Stalled
	})
	b.silent()
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	a.send("unlock q")
	a.expect("lost q")
	b.expect("held q")
	p, _ := Prefix(e.run)
	resp, err := e.cli.Get(context.Background(), keys{p}.shadowDir("q"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d shadows of q; want b's alone", len(resp.Kvs))
	}
	// The expiry b noted is over with a's shadow: a's Unlock removed it.
	if died, err := e.cli.Get(context.Background(), keys{p}.diedDir("q"), clientv3.WithPrefix(), clientv3.WithKeysOnly()); err != nil || len(died.Kvs) != 0 {
		t.Errorf("expiry records %v left after a's Unlock (%v); want none", died.Kvs, err)
	}
	var rec HolderRecord
	if err := decodeHolder(resp.Kvs[0].Value, &rec); err != nil || rec.ID.PID != b.pid || rec.Stalled {
		t.Errorf("b's shadow %s; want b's record, not stalled", resp.Kvs[0].Value)
	}
	b.send("unlock q")
	b.expect("unlocked q")
}

// TestPruneEnded: processes SIGKILLed (no Close) leave their records; once
// their leases expired, the next process to open the run removes them,
// except those of a process a lock record still names (it died holding a
// lock: the diagnosis needs them).
func TestPruneEnded(t *testing.T) {
	e := newEnv(t)
	var killed []*child
	for i := range 3 {
		c := e.start("cmd", "host-"+strconv.Itoa(i), envTTL+"=2")
		c.send("lock q")
		c.expect("held q")
		c.send("unlock q")
		c.expect("unlocked q")
		killed = append(killed, c)
	}
	holder := e.start("cmd", "host-h", envTTL+"=2")
	holder.send("lock kept")
	holder.expect("held kept")
	for _, c := range append(killed, holder) {
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
	}
	p, _ := Prefix(e.run)
	e.waitFor("their leases expired", func(s *Snapshot) bool {
		for _, pr := range s.Processes {
			if pr.Alive {
				return false
			}
		}
		return len(s.Processes) == 4
	})
	e.start("cmd", "host-new")
	deadline := time.Now().Add(patience)
	for {
		resp, err := e.cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, kv := range resp.Kvs {
			k := strings.TrimPrefix(string(kv.Key), p)
			if strings.Contains(k, "host-0") || strings.Contains(k, "host-1") || strings.Contains(k, "host-2") {
				left = append(left, k)
			}
		}
		s, err := Read(context.Background(), e.cli, e.run)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			if _, ok := s.Process(lockOf(s, "kept").Holder.Record.ID); !ok {
				t.Errorf("the dead holder's process record was removed; want it kept")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records of the killed processes left: %v", left)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestExpiredWaiter: a waiter whose lease expires while it waits (SIGSTOP)
// never held the lock: when the holder releases, the lock is free (the
// waiter's shadow is removed), and a new Lock takes it at once.
func TestExpiredWaiter(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a")
	w := e.start("cmd", "host-w", envTTL+"=2")
	a.send("lock q")
	a.expect("held q")
	w.send("lock q")
	e.waitFor("w waiting", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	e.waitFor("w's key gone with its lease", func(s *Snapshot) bool { return waitersOn(s, "q") == 0 })
	a.send("unlock q")
	a.expect("unlocked q")
	s := e.waitFor("q free", func(s *Snapshot) bool { return lockOf(s, "q").Holder == nil })
	if l := lockOf(s, "q"); l.Expired {
		t.Errorf("q %+v: an expired waiter read as an expired holder", l)
	}
	b := e.start("cmd", "host-b")
	b.send("try q")
	b.expect("held q")
	b.expect("unlocked q")
	_ = w.cmd.Process.Kill()
}
