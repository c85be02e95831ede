package etcdreg

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/procid"
)

// changesSince returns the key changes of the run made after revision
// from, up to the current revision, by revision: "put KEY" or "delete KEY",
// KEY relative to the run's prefix, a put of a shadow marked Held as
// "put KEY held".
func changesSince(t *testing.T, e *testEnv, from int64) map[int64][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	p, _ := Prefix(e.run)
	now, err := e.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]string{}
	if now.Header.Revision == from {
		return out
	}
	wch := e.cli.Watch(ctx, p, clientv3.WithPrefix(), clientv3.WithRev(from+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		last := int64(0)
		for _, ev := range wr.Events {
			rev := ev.Kv.ModRevision
			last = rev
			key := strings.TrimPrefix(string(ev.Kv.Key), p)
			var c string
			if ev.Type == clientv3.EventTypeDelete {
				c = "delete " + key
			} else {
				c = "put " + key
				var rec HolderRecord
				if strings.HasPrefix(key, "hold/") && decodeHolder(ev.Kv.Value, &rec) == nil && rec.Held {
					c += " held"
				}
			}
			out[rev] = append(out[rev], c)
		}
		if last >= now.Header.Revision {
			return out // etcd sends a revision's events in one response
		}
	}
	t.Fatal("watch ended")
	return nil
}

// lockChanges splits changes by revision into those that touch a lock's
// keys and the revisions that only write batches of put-off events (off
// the critical path: a process's release events, when no release of its
// own carried them within flushAfter).
func lockChanges(t *testing.T, ch map[int64][]string) (locks map[int64][]string, batches int) {
	t.Helper()
	locks = map[int64][]string{}
	for rev, cs := range ch {
		only := true
		for _, c := range cs {
			only = only && isBatch(c)
		}
		if only {
			batches++
			continue
		}
		locks[rev] = cs
	}
	return locks, batches
}

// isBatch: change c writes a batch of put-off events.
func isBatch(c string) bool {
	return strings.HasPrefix(c, "put event/") && strings.HasPrefix(leafOf(c), "b")
}

// revisions lists changes by revision, in order, for error messages.
func revisions(ch map[int64][]string) string {
	var revs []int64
	for r := range ch {
		revs = append(revs, r)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	var b strings.Builder
	for _, r := range revs {
		fmt.Fprintf(&b, "\n  %d: %s", r, strings.Join(ch[r], ", "))
	}
	return b.String()
}

func currentRev(t *testing.T, e *testEnv) int64 {
	t.Helper()
	resp, err := e.cli.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestWritesPerHold counts etcd's revisions and key changes of holds, with
// a watch of the run: an uncontended Lock+Unlock is two revisions (queue:
// the key and its shadow; release: their deletion, with, now and then, a
// batch of earlier releases' events, which carry the acquires), and a
// handoff to a queued etcdreg waiter costs no
// write of its own: the release that makes it the owner marks its shadow
// Held, in the same revision, so that each contended acquisition is two
// writes (its queueing and its release), as concurrency.Mutex's.
func TestWritesPerHold(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	open := func(host string) *Mutex {
		reg, err := Open(ctx, e.cli, e.run, Options{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
		mu, err := reg.Mutex("q")
		if err != nil {
			t.Fatal(err)
		}
		return mu
	}
	a, b, c := open("host-a"), open("host-b"), open("host-c")
	lockUnlock := func(m *Mutex) {
		t.Helper()
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var from int64
	for i := range 3 {
		if i == 1 { // the first Lock of a call site also writes its stack
			from = currentRev(t, e)
		}
		lockUnlock(a)
	}
	ch, _ := lockChanges(t, changesSince(t, e, from))
	// One contender key for the process's calls, taken again: etcd's index
	// keeps each deleted key name until compaction.
	key := a.lastKey()
	want := []string{"put " + key, "put " + strings.Replace(key, "lock/", "hold/", 1) + " held"}
	if len(ch) != 4 {
		t.Fatalf("two uncontended Lock+Unlock: %d revisions; want 4:%s", len(ch), revisions(ch))
	}
	for rev, cs := range ch {
		if strings.HasPrefix(cs[0], "put ") {
			if strings.Join(cs, ", ") != strings.Join(want, ", ") {
				t.Errorf("revision %d: %s; want %s", rev, strings.Join(cs, ", "), strings.Join(want, ", "))
			}
			continue
		}
		if len(cs) < 2 || cs[0] != "delete "+key || cs[1] != "delete "+strings.Replace(key, "lock/", "hold/", 1) {
			t.Errorf("revision %d: %s; want the deletion of %s and its shadow", rev, strings.Join(cs, ", "), key)
		}
		for _, c := range cs[2:] {
			if !isBatch(c) {
				t.Errorf("revision %d: %s; want the deletion of %s and its shadow, and at most a batch of events", rev, strings.Join(cs, ", "), key)
			}
		}
	}

	// a holds (it took the lock at once: it knows no successor); b, then
	// c, queue behind it.
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 2)
	go func() { got <- b.Lock(ctx) }()
	e.waitFor("b queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	go func() { got <- c.Lock(ctx) }()
	e.waitFor("c queued", func(s *Snapshot) bool { return waitersOn(s, "q") == 2 })
	from = currentRev(t, e)
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if b.Token() == 0 {
		t.Fatal("b's Lock returned, and b holds nothing")
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ch, _ = lockChanges(t, changesSince(t, e, from))
	// a's release: b marks its own shadow (a did not know it); b's
	// release marks c's, c writes nothing; c's release.
	if len(ch) != 4 {
		t.Fatalf("three releases, two of them handing the lock to a waiter: %d revisions; want 4 (one mark written by b, none by c):%s", len(ch), revisions(ch))
	}
	bShadow, cShadow := "hold/q/"+leafOf(b.lastKey()), "hold/q/"+leafOf(c.lastKey())
	var self, byRelease int
	for _, cs := range ch {
		if len(cs) == 1 && cs[0] == "put "+bShadow+" held" {
			self++
		}
		if len(cs) > 1 && strings.HasPrefix(cs[0], "delete lock/q/"+leafOf(b.lastKey())) && slices.Contains(cs, "put "+cShadow+" held") {
			byRelease++
		}
	}
	if self != 1 || byRelease != 1 {
		t.Errorf("b marked its shadow %d times (want 1), b's release marked c's %d times (want 1):%s", self, byRelease, revisions(ch))
	}
}

// lastKey returns the contender key of m's last hold, relative to the
// run's prefix, once released: the key its next Lock takes again.
func (m *Mutex) lastKey() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := uint64(1)
	if n := len(m.freeSlots); n > 0 {
		slot = m.freeSlots[n-1]
	}
	return strings.TrimPrefix(m.r.k.lockDir(m.name), m.r.k.p) + fmt.Sprintf("%x-%d", int64(m.slotLease), slot)
}

// TestPromotedWaiterExpires: a waiter that a release makes the owner, and
// whose lease then expires before its Lock could return (stopped, here),
// is an expired holder by its shadow, marked by that release: the next
// Stall waiter waits for it; resumed, it finds its key gone, withdraws,
// and the lock moves on in order.
func TestPromotedWaiterExpires(t *testing.T) {
	e := newEnv(t)
	x := e.start("cmd", "host-x")
	a := e.start("cmd", "host-a")
	w := e.start("cmd", "host-w", envTTL+"=2")
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	x.send("lock q")
	x.expect("held q")
	a.send("lock q")
	e.waitFor("a waiting", func(s *Snapshot) bool { return waitersOn(s, "q") == 1 })
	w.send("lock q")
	e.waitFor("w waiting behind a", func(s *Snapshot) bool { return waitersOn(s, "q") == 2 })
	x.send("unlock q")
	x.expect("unlocked q")
	a.expect("held q") // a knows w as its successor
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.send("unlock q")
	a.expect("unlocked q")
	s := e.waitFor("w, made the owner by a's release, expired", func(s *Snapshot) bool {
		l := lockOf(s, "q")
		return l.Expired && l.Holder != nil && l.Holder.Record != nil && l.Holder.Record.ID.PID == w.pid
	})
	if l := lockOf(s, "q"); l.Holder.Record.ID.Host != "host-w" {
		t.Errorf("expired holder %+v; want w on host-w", l.Holder.Record)
	}
	b := e.start("cmd", "host-b")
	b.send("lock q")
	e.waitFor("b stalled behind w", func(s *Snapshot) bool { return lockOf(s, "q").Stalled })
	b.silent()
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	b.expect("held q")
	b.send("unlock q")
	b.expect("unlocked q")
	w.expect("held q") // queued again behind b, with its new lease
}

// TestHolderValue: a contender's value reads back as the record written;
// the shadow of an owner, made by setting the Held flag of the encoded
// record, is the record with Held set; the JSON of earlier runs still
// reads; values that are not etcdreg's (etcd's own lock's, an election's,
// a damaged one) are refused.
func TestHolderValue(t *testing.T) {
	recs := []HolderRecord{
		{ID: procid.ID{Host: "h", PID: 1, Start: 2}, Goroutine: 3, Stack: 4, Since: time.Unix(5, 6), Lease: 7, Policy: "stall"},
		{ID: procid.ID{Host: "h/x", PID: 1 << 22, Start: 1 << 40}, Goroutine: -1, Stack: 1<<64 - 1, Since: time.Unix(1<<33, 999), Lease: -7,
			Policy: "recover", Stalled: true, Acquired: time.Unix(1<<33, 1000)},
	}
	same := func(a, b HolderRecord) bool {
		return a.Since.Equal(b.Since) && a.Acquired.Equal(b.Acquired) &&
			a.ID == b.ID && a.Goroutine == b.Goroutine && a.Stack == b.Stack && a.Lease == b.Lease && a.Policy == b.Policy &&
			a.Stalled == b.Stalled && a.Held == b.Held
	}
	for _, rec := range recs {
		val := appendHolder(nil, &rec)
		var got HolderRecord
		if err := decodeHolder(val, &got); err != nil || !same(got, rec) {
			t.Errorf("%+v read back as %+v (%v)", rec, got, err)
		}
		val[flagsAt] |= flagHeld
		held := rec
		held.Held = true
		if want := encodeHolder(&held); string(val) != want {
			t.Errorf("%q with Held set; want %q", val, want)
		}
		if err := decodeHolder([]byte(mustJSON(rec)), &got); err != nil || !same(got, rec) {
			t.Errorf("the JSON of %+v read as %+v (%v)", rec, got, err)
		}
		for n := range len(val) {
			if _, ok := DecodeHolder(val[:n]); ok {
				t.Errorf("%q, cut at %d bytes, read as a record", val, n)
			}
		}
		if _, ok := DecodeHolder(append(val, 0)); ok {
			t.Errorf("%q with a byte more read as a record", val)
		}
	}
	for _, v := range []string{"", "candidate-1", `{"leader":"x"}`, "\xffLW3", "\xffLW2\x00\x01\x01\x00\x00\x00\x00\x00"} {
		if rec, ok := DecodeHolder([]byte(v)); ok {
			t.Errorf("%q read as %+v; want no record", v, rec)
		}
	}
}

// FuzzDecodeHolder: any value, however hostile, is read in bounded time
// and memory, and a record read from one is written and read back the
// same.
func FuzzDecodeHolder(f *testing.F) {
	f.Add([]byte(encodeHolder(&HolderRecord{ID: procid.ID{Host: "h", PID: 1, Start: 2}, Since: time.Unix(5, 6), Policy: "stall"})))
	f.Add([]byte(holderMagic + "\x1f\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, v []byte) {
		var rec, again HolderRecord
		if len(v) > 0 && v[0] == '{' || decodeHolder(v, &rec) != nil {
			return
		}
		val := encodeHolder(&rec)
		if err := decodeHolder([]byte(val), &again); err != nil || encodeHolder(&again) != val {
			t.Errorf("%q read as %+v, which is written as %q and read back as %+v (%v)", v, rec, val, again, err)
		}
	})
}

// TestEventBatch: a batch of events reads back as written, in the compact
// form as in the JSON of earlier runs; damaged ones are refused.
func TestEventBatch(t *testing.T) {
	id := procid.ID{Host: "h", PID: 12, Start: 34}
	evs := []EventRecord{
		{Seq: 1, Kind: EventRelease, Lock: "q/1", ID: id, Goroutine: 5, Stack: 1<<64 - 1, Time: time.Unix(7, 8), Token: 9, Rev: 10,
			Acquired: &AcquireRecord{Time: time.Unix(6, 1), Goroutine: 5, Rev: 9, Waited: time.Unix(5, 2)}},
		{Seq: 2, Kind: EventRelease, Lock: "q", ID: id, Goroutine: 6, Time: time.Unix(8, 0), Token: 11, Rev: 12,
			Acquired: &AcquireRecord{Time: time.Unix(7, 9), Goroutine: 6, Rev: 11}},
		{Seq: 3, Kind: EventLost, Lock: "r", ID: id, Time: time.Unix(9, 0), Token: 13},
	}
	same := func(a, b []EventRecord) bool {
		return mustJSON(a) == mustJSON(b)
	}
	utc := func(evs []EventRecord) []EventRecord {
		out := append([]EventRecord(nil), evs...)
		for i := range out {
			out[i].Time = out[i].Time.UTC()
			if a := out[i].Acquired; a != nil {
				c := *a
				c.Time, c.Waited = c.Time.UTC(), c.Waited.UTC()
				if a.Waited.IsZero() {
					c.Waited = time.Time{}
				}
				out[i].Acquired = &c
			}
		}
		return out
	}
	val := encodeBatch(id, evs)
	got, err := decodeEvents(val)
	if err != nil || !same(utc(got), utc(evs)) {
		t.Errorf("batch read back as %s (%v); want %s", mustJSON(got), err, mustJSON(evs))
	}
	// The form of format 3's first runs (batchMagic: each event with its
	// process), as they wrote these events.
	old, _ := hex.DecodeString("ff4c574202070103712f310c2201680affffffffffffffffff019098dc9334121482f085da2c0a1284c8afa02502050201710c2201680c0080c0b2cd3b16189298dc93340c1609040301720c220168000080e88887431a00")
	if got, err := decodeEvents(old); err != nil || !same(utc(got), utc(evs)) {
		t.Errorf("batch of the earlier form read as %s (%v); want %s", mustJSON(got), err, mustJSON(evs))
	}
	if got, err := decodeEvents([]byte(mustJSON(evs))); err != nil || !same(utc(got), utc(evs)) {
		t.Errorf("JSON batch read as %s (%v)", mustJSON(got), err)
	}
	for _, v := range [][]byte{val, old} {
		for n := len(batchMagic); n < len(v); n++ {
			if got, err := decodeEvents(v[:n]); err == nil && len(got) == len(evs) {
				t.Errorf("batch %q cut at %d bytes read as %d events", v[:4], n, len(got))
			}
		}
	}
	// Each event is written against the one before it: a release of the
	// same lock, a few milliseconds after the one before, takes about 20
	// bytes, where the earlier form took 55.
	var rel []EventRecord
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 32 {
		at := t0.Add(time.Duration(i) * 2 * time.Millisecond)
		rel = append(rel, EventRecord{Seq: uint64(1000 + i), Kind: EventRelease, Lock: "queue.wlock", ID: id, Goroutine: 7, Stack: 1,
			Time: at.Add(time.Millisecond), Token: int64(100000 + 2*i), Rev: int64(100001 + 2*i),
			Acquired: &AcquireRecord{Time: at, Goroutine: 7, Rev: int64(100000 + 2*i)}})
	}
	b := encodeBatch(id, rel)
	if got, err := decodeEvents(b); err != nil || !same(utc(got), utc(rel)) {
		t.Errorf("32 releases read back as %s (%v)", mustJSON(got), err)
	}
	if per := len(b) / len(rel); per > 20 {
		t.Errorf("%d bytes for %d releases, %d an event; want at most 20", len(b), len(rel), per)
	}
}

// FuzzDecodeEvents: any value of an event key, however hostile, is read in
// bounded time and memory.
func FuzzDecodeEvents(f *testing.F) {
	id := procid.ID{Host: "h", PID: 1, Start: 2}
	f.Add(encodeBatch(id, []EventRecord{{Seq: 1, Kind: EventRelease, Lock: "q", Time: time.Unix(1, 2), Acquired: &AcquireRecord{Time: time.Unix(1, 1)}},
		{Seq: 2, Kind: EventRelease, Lock: "q", Time: time.Unix(1, 4), Acquired: &AcquireRecord{Time: time.Unix(1, 3), Waited: time.Unix(1, 2)}}}))
	f.Add([]byte(batchMagic + "\x02\x03\x01\xff\xff\xff\xff\x0f"))
	f.Add([]byte(batchMagic4 + "\x01\x02\x01h\x02\x00\x01"))
	f.Fuzz(func(t *testing.T, v []byte) {
		evs, err := decodeEvents(v)
		if err == nil && len(v) > len(batchMagic) && (string(v[:len(batchMagic)]) == batchMagic || string(v[:len(batchMagic4)]) == batchMagic4) && len(evs) > len(v)/2 {
			t.Errorf("%d bytes read as %d events", len(v), len(evs))
		}
	})
}

// TestStaleUnlock: Unlock compares nothing in etcd, so an Unlock of a hold
// already released (two goroutines unlocking at once, the second behind)
// must find the lock not held and leave alone the process's next hold,
// which takes the same key name again; and while one Unlock of a hold is
// under way, another finds it not held.
func TestStaleUnlock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg, err := Open(ctx, e.cli, e.run, Options{Host: "stale"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	mu, err := reg.Mutex("q")
	if err != nil {
		t.Fatal(err)
	}
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	old := mu.curHold()
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	cur := mu.curHold()
	if cur.key != old.key {
		t.Fatalf("the next hold's key %s; want the first one's, %s, again", cur.key, old.key)
	}
	if err := mu.release(ctx, old); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock of the released hold: %v; want ErrNotHeld", err)
	}
	resp, err := e.cli.Txn(ctx).If(mu.IsOwner()).Commit()
	if err != nil || !resp.Succeeded {
		t.Errorf("the next hold's key is gone after the stale Unlock (%v)", err)
	}
	sh, err := e.cli.Get(ctx, cur.shadow)
	if err != nil || len(sh.Kvs) != 1 || sh.Kvs[0].CreateRevision != cur.rev {
		t.Errorf("the next hold's shadow %v (%v); want it, created at %d", sh.Kvs, err, cur.rev)
	}
	if !mu.beginRelease(cur) {
		t.Fatal("the hold cannot be released")
	}
	if err := mu.Unlock(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock while another is under way: %v; want ErrNotHeld", err)
	}
	mu.endRelease(cur, false)
	if err := mu.Unlock(ctx); err != nil {
		t.Errorf("Unlock after the other gave up: %v", err)
	}
}
