package report

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// finding is what a test expects of a finding.
type finding struct {
	kind   Kind
	lock   string
	holder string   // party text "pid/g" or "host/pid/g"; "" for none
	state  string   // holder state, when holder is set
	waiter []string // waiting parties
	cycle  []string // cycle steps: "party>lock"
	others int
	death  string // the holder's proof of death
}

func partyText(p Party) string {
	s := fmt.Sprintf("%d/g%d", p.PID, p.Goroutine)
	if p.Host != "" {
		s = p.Host + "/" + s
	}
	return s
}

func TestFindingsFake(t *testing.T) {
	long := t0.Add(-time.Minute)
	tests := []struct {
		name   string
		locks  []fakeLock
		known  map[procid.ID]procid.Status // what the backend knows
		status map[procid.ID]procid.Status // what the host says (missing: alive)
		want   []finding
	}{
		{
			name: "two readers hold, a writer waits: nothing",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)},
				waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}}},
		},
		{
			name: "a writer waits for two readers, one of which waits for the writer's lock",
			locks: []fakeLock{
				{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)},
					waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}},
				{name: "m", holders: []lockstate.Holder{wr(g(pC, 3), t0)},
					waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
			},
			want: []finding{{kind: Cycle, lock: "m", holder: "300/g3", state: "alive", waiter: []string{"100/g1"},
				cycle: []string{"100/g1>m", "300/g3>rw"}}},
		},
		{
			name: "both readers wait for the writer's locks: one knot of three",
			locks: []fakeLock{
				{name: "x", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)},
					waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}},
				{name: "y", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
				{name: "z", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
			},
			want: []finding{{kind: Cycle, lock: "x", holder: "100/g1", state: "alive", waiter: []string{"300/g3"},
				cycle: []string{"300/g3>x", "100/g1>y"}, others: 1}},
		},
		{
			name: "an AB/BA loop through a holder inferred from evidence: an inferred cycle, not a deadlock",
			locks: []fakeLock{
				{name: "a", holders: []lockstate.Holder{inferred(wr(g(pA, 1), t0))}, waiters: []lockstate.Waiter{wantW(g(pA, 2), t0)}},
				{name: "b", holders: []lockstate.Holder{wr(g(pA, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
			},
			want: []finding{{kind: InferredCycle, lock: "a", holder: "100/g1", state: "alive", waiter: []string{"100/g2"},
				cycle: []string{"100/g2>a", "100/g1>b"}}},
		},
		{
			name: "a recursive RLock whose read holder is inferred: inferred too",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{inferred(rd(g(pA, 1), long))},
				waiters: []lockstate.Waiter{wantW(g(pB, 2), long), wantR(g(pA, 1), t0)}}},
			want: []finding{{kind: InferredCycle, lock: "rw", holder: "100/g1", state: "alive", waiter: []string{"100/g1"},
				cycle: []string{"100/g1>rw", "200/g2>rw"}}},
		},
		{
			name: "a reader reads again behind a queued writer (recursive RLock)",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), long)},
				waiters: []lockstate.Waiter{wantW(g(pB, 2), long), wantR(g(pA, 1), t0)}}},
			want: []finding{{kind: SelfDeadlock, lock: "rw", holder: "100/g1", state: "alive", waiter: []string{"100/g1"},
				cycle: []string{"100/g1>rw", "200/g2>rw"}}},
		},
		{
			name: "a reader waits for a writer that waits for another lock the reader's process holds",
			locks: []fakeLock{
				{name: "a", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantR(g(pA, 1), t0)}},
				{name: "b", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
			},
			want: []finding{{kind: Cycle, lock: "a", holder: "200/g2", state: "alive", waiter: []string{"100/g1"},
				cycle: []string{"100/g1>a", "200/g2>b"}}},
		},
		{
			name: "a reader waiting while readers alone hold and no writer waits: no edge",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), t0)},
				waiters: []lockstate.Waiter{wantR(g(pB, 2), t0)}}},
		},
		{
			name:  "a goroutine waits for a lock it holds itself",
			locks: []fakeLock{{name: "m", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}}},
			want: []finding{{kind: SelfDeadlock, lock: "m", holder: "100/g1", state: "alive", waiter: []string{"100/g1"},
				cycle: []string{"100/g1>m"}}},
		},
		{
			name: "loop across two hosts",
			locks: []fakeLock{
				{name: "a", holders: []lockstate.Holder{wr(g(pR, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pS, 2), t0)}},
				{name: "b", holders: []lockstate.Holder{wr(g(pS, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pR, 1), t0)}},
			},
			known: map[procid.ID]procid.Status{pR: procid.Alive, pS: procid.Alive},
			want: []finding{{kind: Cycle, lock: "a", holder: "db2/100/g1", state: "alive", waiter: []string{"db3/400/g2"},
				cycle: []string{"db3/400/g2>a", "db2/100/g1>b"}}},
		},
		{
			name: "holder on another host with an expired lease",
			locks: []fakeLock{{name: "jobs", holders: []lockstate.Holder{wr(g(pR, 1), long)},
				waiters: []lockstate.Waiter{wantW(g(pA, 5), t0)}}},
			known: map[procid.ID]procid.Status{pR: procid.Expired},
			want: []finding{{kind: DeadHolder, lock: "jobs", holder: "db2/100/g1", state: "expired", death: "lease-expired",
				waiter: []string{"100/g5"}}},
		},
		{
			name: "lock the store marked abandoned; the holder's host is not asked",
			locks: []fakeLock{{name: "jobs", holders: []lockstate.Holder{wr(g(pR, 1), long)},
				waiters: []lockstate.Waiter{wantW(g(pA, 5), t0)},
				abandon: &lockstate.Proof{Reason: lockstate.LeaseExpired, Says: "its lease expired"}}},
			want: []finding{{kind: DeadHolder, lock: "jobs", holder: "db2/100/g1", state: "expired", death: "lease-expired",
				waiter: []string{"100/g5"}}},
		},
		{
			name: "a process of another host the backend knows nothing of: unknown, never dead",
			locks: []fakeLock{{name: "jobs", holders: []lockstate.Holder{wr(g(pR, 1), t0)},
				waiters: []lockstate.Waiter{wantW(g(pA, 5), t0)}}},
		},
		{
			name: "one of two readers dead: a dead holder, the writer waits",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)},
				waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}}},
			status: map[procid.ID]procid.Status{pB: procid.Zombie},
			want: []finding{{kind: DeadHolder, lock: "rw", holder: "200/g2", state: "zombie", death: "zombie",
				waiter: []string{"300/g3"}}},
		},
		{
			name: "abandoned with no holder to name",
			locks: []fakeLock{{name: "q", waiters: []lockstate.Waiter{wantW(g(pA, 5), t0)},
				abandon: &lockstate.Proof{Reason: ownerDied}}},
			want: []finding{{kind: DeadHolder, lock: "q", waiter: []string{"100/g5"}}},
		},
		{
			name: "a chain through a dead reader is no cycle",
			locks: []fakeLock{
				{name: "x", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}},
				{name: "y", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
			},
			status: map[procid.ID]procid.Status{pB: procid.Reused},
			want: []finding{
				{kind: DeadHolder, lock: "x", holder: "200/g2", state: "reused", death: "reused", waiter: []string{"300/g3"}},
				{kind: StaleWaiter, lock: "y", waiter: []string{"200/g2"}},
			},
		},
		{
			name: "a holder known only by its process is never part of a loop",
			locks: []fakeLock{
				{name: "a", holders: []lockstate.Holder{{Party: g(pA, 0)}}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
				{name: "b", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
			},
		},
		{
			name: "a reader stuck for a minute while a writer waits as long",
			locks: []fakeLock{{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), long), rd(g(pB, 2), t0)},
				waiters: []lockstate.Waiter{wantW(g(pC, 3), long)}}},
			want: []finding{{kind: StuckHolder, lock: "rw", holder: "100/g1", state: "alive", waiter: []string{"300/g3"}}},
		},
		{
			name: "host check failed: unknown, no finding",
			locks: []fakeLock{{name: "m", holders: []lockstate.Holder{wr(g(pA, 1), t0)},
				waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}}},
			status: map[procid.ID]procid.Status{pA: procid.Unknown},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := &fakeHost{status: tt.status}
			r, err := diagnoseFake(host, nil, fakeSnap(tt.known, tt.locks...))
			if err != nil {
				t.Fatal(err)
			}
			if len(host.remote) > 0 {
				t.Errorf("the host was asked about processes of other machines: %v", host.remote)
			}
			checkFindings(t, r.Findings, tt.want)

			// The same through a host that checks all at once.
			batch := &batchFake{fakeHost: &fakeHost{status: tt.status}}
			src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{fakeSnap(tt.known, tt.locks...)}}}, Host: batch}
			r, err = Diagnose(t.Context(), src, Options{StuckAfter: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if len(batch.remote) > 0 {
				t.Errorf("the batch host was asked about processes of other machines: %v", batch.remote)
			}
			checkFindings(t, r.Findings, tt.want)
		})
	}
}

func checkFindings(t *testing.T, got []Finding, want []finding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d findings %v; want %d", len(got), summaries(got), len(want))
	}
	for i, w := range want {
		f := got[i]
		if f.Kind != w.kind || f.Lock != w.lock || f.LockKind != fakeKind {
			t.Errorf("finding %d: got %s on %s %q; want %s on %s %q", i, f.Kind, f.LockKind, f.Lock, w.kind, fakeKind, w.lock)
		}
		holder, state, death := "", "", ""
		if f.Holder != nil {
			holder, state, death = partyText(*f.Holder), f.Holder.State, f.Holder.Death
		}
		if holder != w.holder || (w.holder != "" && (state != w.state || death != w.death)) {
			t.Errorf("finding %d: got holder %q %s %q; want %q %s %q", i, holder, state, death, w.holder, w.state, w.death)
		}
		var ws, cs []string
		for _, p := range f.Waiters {
			ws = append(ws, partyText(p))
		}
		for _, st := range f.Cycle {
			cs = append(cs, partyText(st.Party)+">"+st.WaitsFor)
		}
		if !slices.Equal(ws, w.waiter) {
			t.Errorf("finding %d: got waiters %v; want %v", i, ws, w.waiter)
		}
		if !slices.Equal(cs, w.cycle) || f.Others != w.others {
			t.Errorf("finding %d: got cycle %v (+%d); want %v (+%d)", i, cs, f.Others, w.cycle, w.others)
		}
		if f.Summary == "" || f.Next == "" {
			t.Errorf("finding %d: got an empty summary or next step", i)
		}
		if f.Holder != nil && f.Holder.Host != "" && !strings.Contains(f.Summary, " on "+f.Holder.Host) {
			t.Errorf("finding %d: summary %q does not name the holder's host %s", i, f.Summary, f.Holder.Host)
		}
	}
}

func summaries(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Kind)+": "+f.Summary)
	}
	return out
}

// The loop is read the same way whatever order the backend lists its
// locks, holders and waiters in.
func TestCycleDeterministic(t *testing.T) {
	locks := []fakeLock{
		{name: "x", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}},
		{name: "y", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
		{name: "z", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
	}
	first := ""
	for i := range 6 {
		ls := slices.Clone(locks)
		// Rotate the locks and reverse the readers.
		ls = append(ls[i%3:], ls[:i%3]...)
		if i >= 3 {
			x := slices.Clone(ls[0].holders)
			slices.Reverse(x)
			ls[0].holders = x
		}
		r, err := diagnoseFake(&fakeHost{}, nil, fakeSnap(nil, ls...))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Findings) != 1 {
			t.Fatalf("order %d: got %v; want one cycle", i, summaries(r.Findings))
		}
		if i == 0 {
			first = r.Findings[0].Key()
		} else if k := r.Findings[0].Key(); k != first {
			t.Errorf("order %d: got %s; want %s", i, k, first)
		}
	}
}

// Locks of two backends (two kinds) in one diagnosis: a loop through both.
func TestMergeSources(t *testing.T) {
	one := fakeSnap(nil, fakeLock{name: "a", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}})
	two := fakeSnap(nil, fakeLock{name: "b", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}})
	for i := range two.Locks {
		two.Locks[i].Kind = "mutex"
	}
	two.Processes[0].Command = "from-two"
	two.Run, two.Taken = "other", t0.Add(time.Second)
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{one}}, &fakeSource{snaps: []*lockstate.Snapshot{two}}},
		Host: &fakeHost{}}
	r, err := Diagnose(t.Context(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Run != "fake:test" || !r.Taken.Equal(t0.Add(time.Second)) {
		t.Errorf("got run %q taken %v; want the first source's run, the latest time", r.Run, r.Taken)
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != Cycle || len(r.Findings[0].Cycle) != 2 {
		t.Fatalf("got %v; want one cycle through both kinds", summaries(r.Findings))
	}
	if c := r.Findings[0].Cycle; c[0].WaitsFor != "a" || c[1].WaitsFor != "b" {
		t.Errorf("got cycle %+v; want a then b", c)
	}
	if len(r.Processes) != 2 {
		t.Errorf("got %d processes; want 2 (each named by both sources, listed once)", len(r.Processes))
	}
	if len(r.Events) != 4 {
		t.Errorf("got %d events; want the 4 of both sources", len(r.Events))
	}
}

// inferred marks a holder as inferred from evidence, not recorded.
func inferred(h lockstate.Holder) lockstate.Holder {
	h.Inferred = "a pending deferred Unlock of it in main.f"
	return h
}

// TestInferredNotDeadlock: an inferred cycle is reported, labelled, and is
// never a deadlock (run --on-deadlock=kill acts on deadlocks only).
func TestInferredNotDeadlock(t *testing.T) {
	r, err := diagnoseFake(&fakeHost{}, nil, fakeSnap(nil,
		fakeLock{name: "a", holders: []lockstate.Holder{inferred(wr(g(pA, 1), t0))}, waiters: []lockstate.Waiter{wantW(g(pA, 2), t0)}},
		fakeLock{name: "b", holders: []lockstate.Holder{inferred(wr(g(pA, 2), t0))}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Deadlock() || !r.Has(InferredCycle) {
		t.Fatalf("got %v, deadlock %v; want an inferred cycle and no deadlock", summaries(r.Findings), r.Deadlock())
	}
	f := r.Findings[0]
	if !strings.Contains(f.Summary, "inferred, not proven") || !strings.Contains(f.Summary, "pending deferred Unlock") {
		t.Errorf("summary %q does not say it is inferred and why", f.Summary)
	}
	var b strings.Builder
	if err := r.Write(&b, Style{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "held (inferred)") {
		t.Errorf("the locks table does not mark the inferred holders:\n%s", b.String())
	}
}

// TestInferredStuckHolder: a stuck holder that its backend inferred says
// so, with its evidence, and that its time is a lower bound.
func TestInferredStuckHolder(t *testing.T) {
	long := t0.Add(-time.Minute)
	r, err := diagnoseFake(&fakeHost{}, nil, fakeSnap(nil,
		fakeLock{name: "a", holders: []lockstate.Holder{inferred(wr(g(pA, 1), long))}, waiters: []lockstate.Waiter{wantW(g(pA, 2), long)}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != StuckHolder {
		t.Fatalf("got %v; want a stuck holder", summaries(r.Findings))
	}
	if s := r.Findings[0].Summary; !strings.Contains(s, "for at least 1m0s") || !strings.Contains(s, "inferred, not proven: a pending deferred Unlock") {
		t.Errorf("summary %q does not say the holder is inferred and its time a lower bound", s)
	}
	// No stacks of its own follow: the next step says where to get them.
	if n := r.Findings[0].Next; strings.Contains(n, "stacks are below") || !strings.Contains(n, "lockwatch stacks 100") {
		t.Errorf("next %q promises stacks below or does not say how to get them", n)
	}
}

// A backend's proof reaches the finding as its reason (proof), as the lock's
// state; a death only the host proved has no proof.
func TestProofReason(t *testing.T) {
	snap := fakeSnap(map[procid.ID]procid.Status{pB: procid.Gone},
		fakeLock{name: "a", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)},
			abandon: &lockstate.Proof{Reason: ownerDied, Says: "the kernel marked it OWNER_DIED"}},
		fakeLock{name: "b", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 4), t0)}})
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{snap}}}, Host: &fakeHost{}}
	r, err := Diagnose(context.Background(), src, Options{StuckAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	proofs := map[string]string{}
	for _, f := range r.Findings {
		if f.Kind == DeadHolder {
			proofs[f.Lock] = f.Proof
		}
	}
	if want := map[string]string{"a": "owner-died", "b": ""}; !maps.Equal(proofs, want) {
		t.Errorf("dead holders' proofs %v; want %v", proofs, want)
	}
	for _, l := range r.Locks {
		if want := map[string]string{"a": "owner-died", "b": "held"}[l.Name]; l.State != want {
			t.Errorf("lock %s: state %q; want %q", l.Name, l.State, want)
		}
	}
}
