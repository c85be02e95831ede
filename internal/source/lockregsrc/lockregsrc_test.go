package lockregsrc_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
)

// diagnose diagnoses a run whose every read returns the snapshots in turn
// (the last one again and again).
func diagnose(t *testing.T, h report.Host, snaps ...*arena.Snapshot) *report.Report {
	t.Helper()
	n := 0
	read := func(string) (*arena.Snapshot, error) {
		s := snaps[min(n, len(snaps)-1)]
		n++
		return s, nil
	}
	src := report.Sources{Locks: []lockstate.Source{lockregsrc.Source{Dir: "run", ReadSnapshot: read}}, Host: h}
	r, err := report.Diagnose(context.Background(), src, report.Options{StuckAfter: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Identities used by the synthetic snapshots.
var (
	pA = proc.Identity{PID: 100, Start: 1000}
	pB = proc.Identity{PID: 200, Start: 2000}
	pC = proc.Identity{PID: 300, Start: 3000}
)

func held(idx int, name string, id proc.Identity, g int64, since time.Time) arena.Lock {
	return arena.Lock{Index: idx, Name: name, Word: uint32(id.PID), HolderPID: id.PID,
		Holder: &arena.Holder{PID: id.PID, Start: id.Start, Goroutine: g, Since: since, ProcSlot: -1}}
}

func waiting(slot int, id proc.Identity, g int64, lock int, name string, since time.Time) arena.Waiter {
	return arena.Waiter{Slot: slot, PID: id.PID, Start: id.Start, Goroutine: g, Lock: lock, LockName: name, Since: since}
}

func procs(ids ...proc.Identity) []arena.Process {
	var out []arena.Process
	for i, id := range ids {
		out = append(out, arena.Process{Slot: i, PID: id.PID, Start: id.Start, State: arena.ProcRunning})
	}
	return out
}

// fakeHost answers from a table; identities missing from it are alive.
type fakeHost map[proc.Identity]proc.Status

func (h fakeHost) Check(id proc.Identity) (proc.Status, error) {
	if st, ok := h[id]; ok {
		return st, nil
	}
	return proc.Alive, nil
}

func (fakeHost) Command(int) string { return "" }

type want struct {
	kind   report.Kind
	lock   string
	holder int // pid; 0 for none
	alive  bool
	waiter []int
}

// TestFindings: the report's findings of lockreg snapshots that real
// processes cannot be made to show on demand (a zombie, a reused pid, a
// failed check, a word marked OWNER_DIED by a holder that looks alive).
// The scenarios real processes do show (a SIGKILLed holder, an AB/BA loop
// across two processes, a stuck holder, a goroutine locking a lock it
// holds) are the conformance suite's, internal/source/conformance.
func TestFindings(t *testing.T) {
	ownerDied := held(0, "q", pA, 5, t0.Add(-time.Minute))
	ownerDied.HolderPID, ownerDied.OwnerDied, ownerDied.Word = 0, true, 0x40000000
	tests := []struct {
		name   string
		snap   arena.Snapshot
		status fakeHost
		want   []want
	}{
		{
			name: "all alive, one waiter: nothing",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{held(0, "q", pA, 5, t0.Add(-time.Second))},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0.Add(-time.Second))}},
		},
		{
			name: "holder zombie",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks: []arena.Lock{held(0, "q", pA, 5, t0)}},
			status: fakeHost{pA: proc.Zombie},
			want:   []want{{kind: report.DeadHolder, lock: "q", holder: 100}},
		},
		{
			name: "holder pid reused",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{held(0, "q", pA, 5, t0)},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0)}},
			status: fakeHost{pA: proc.Reused},
			want:   []want{{kind: report.DeadHolder, lock: "q", holder: 100, waiter: []int{200}}},
		},
		{
			name: "holder unknown: not a death",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{held(0, "q", pA, 5, t0)},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0)}},
			status: fakeHost{pA: proc.Unknown},
		},
		{
			name: "owner died word, holder looks alive",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{ownerDied},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0)}},
			want: []want{{kind: report.DeadHolder, lock: "q", holder: 100, waiter: []int{200}}},
		},
		{
			name: "three-way loop, with a bystander waiting",
			snap: arena.Snapshot{Processes: procs(pA, pB, pC),
				Locks: []arena.Lock{held(0, "x", pA, 1, t0), held(1, "y", pB, 2, t0), held(2, "z", pC, 3, t0)},
				Waiters: []arena.Waiter{
					waiting(0, pA, 1, 1, "y", t0),
					waiting(1, pB, 2, 2, "z", t0),
					waiting(2, pC, 3, 0, "x", t0),
					waiting(3, pC, 4, 0, "x", t0)}},
			want: []want{{kind: report.Cycle, lock: "x", holder: 100, alive: true, waiter: []int{300}}},
		},
		{
			name: "loop within one process",
			snap: arena.Snapshot{Processes: procs(pA),
				Locks: []arena.Lock{held(0, "a", pA, 5, t0), held(1, "b", pA, 6, t0)},
				Waiters: []arena.Waiter{
					waiting(0, pA, 5, 1, "b", t0),
					waiting(1, pA, 6, 0, "a", t0)}},
			want: []want{{kind: report.Cycle, lock: "a", holder: 100, alive: true, waiter: []int{100}}},
		},
		{
			name: "chain ending in a dead holder: no cycle, no stuck holder",
			snap: arena.Snapshot{Processes: procs(pA, pB, pC),
				Locks: []arena.Lock{held(0, "a", pA, 5, t0.Add(-time.Hour)), held(1, "b", pB, 9, t0.Add(-time.Hour))},
				Waiters: []arena.Waiter{
					waiting(0, pA, 5, 1, "b", t0.Add(-time.Hour)),
					waiting(1, pC, 3, 0, "a", t0.Add(-time.Hour))}},
			status: fakeHost{pB: proc.Gone},
			want:   []want{{kind: report.DeadHolder, lock: "b", holder: 200, waiter: []int{100}}},
		},
		{
			name: "long hold, fresh waiter: not stuck yet",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{held(0, "q", pA, 5, t0.Add(-time.Hour))},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0.Add(-time.Second))}},
		},
		{
			name: "dead waiter",
			snap: arena.Snapshot{Processes: procs(pA, pB),
				Locks:   []arena.Lock{held(0, "q", pA, 5, t0)},
				Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0)}},
			status: fakeHost{pB: proc.Gone},
			want:   []want{{kind: report.StaleWaiter, lock: "q", waiter: []int{200}}},
		},
		{
			name: "dead holder and dead waiter: most severe first",
			snap: arena.Snapshot{Processes: procs(pA, pB, pC),
				Locks: []arena.Lock{held(0, "q", pA, 5, t0)},
				Waiters: []arena.Waiter{
					waiting(0, pB, 7, 0, "q", t0),
					waiting(1, pC, 8, 0, "q", t0)}},
			status: fakeHost{pA: proc.Gone, pB: proc.Zombie},
			want: []want{
				{kind: report.DeadHolder, lock: "q", holder: 100, waiter: []int{300}},
				{kind: report.StaleWaiter, lock: "q", waiter: []int{200}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.snap
			s.Taken = t0
			got := diagnose(t, tt.status, &s).Findings
			if len(got) != len(tt.want) {
				t.Fatalf("got %d findings %v; want %d", len(got), kinds(got), len(tt.want))
			}
			for i, w := range tt.want {
				f := got[i]
				if f.Kind != w.kind || f.Lock != w.lock {
					t.Errorf("finding %d: got %s on %q; want %s on %q", i, f.Kind, f.Lock, w.kind, w.lock)
				}
				hp, alive := 0, false
				if f.Holder != nil {
					hp, alive = f.Holder.PID, f.Holder.Alive
				}
				if hp != w.holder || alive != w.alive {
					t.Errorf("finding %d: got holder %d alive=%v; want %d alive=%v", i, hp, alive, w.holder, w.alive)
				}
				var wp []int
				for _, p := range f.Waiters {
					wp = append(wp, p.PID)
				}
				if !slices.Equal(wp, w.waiter) {
					t.Errorf("finding %d: got waiters %v; want %v", i, wp, w.waiter)
				}
				if f.Summary == "" || f.Next == "" {
					t.Errorf("finding %d: got an empty summary or next step", i)
				}
			}
		})
	}
}

// TestCycleHolder: the cycle's holder is described by its holder record
// (when and where it took the lock), and a goroutine that locks a lock it
// holds gets a finding worded for one goroutine.
func TestCycleHolder(t *testing.T) {
	took, began := t0.Add(-time.Minute), t0.Add(-time.Second)
	s := arena.Snapshot{Processes: procs(pA, pB), Taken: t0,
		Locks: []arena.Lock{held(0, "a", pA, 5, took), held(1, "b", pB, 9, took.Add(time.Second))},
		Waiters: []arena.Waiter{
			waiting(0, pA, 5, 1, "b", began),
			waiting(1, pB, 9, 0, "a", began.Add(time.Millisecond))}}
	got := diagnose(t, fakeHost{}, &s).Findings
	if len(got) != 1 || got[0].Kind != report.Cycle || got[0].Holder == nil {
		t.Fatalf("got %v; want one cycle", kinds(got))
	}
	if h := got[0].Holder; h.PID != pA.PID || !h.Since.Equal(took) || time.Duration(h.For) != time.Minute {
		t.Errorf("cycle holder: got pid %d since %v for %v; want pid %d since %v (its acquire) for 1m0s", h.PID, h.Since, time.Duration(h.For), pA.PID, took)
	}

	self := arena.Snapshot{Processes: procs(pA), Taken: t0,
		Locks:   []arena.Lock{held(0, "a", pA, 5, took)},
		Waiters: []arena.Waiter{waiting(0, pA, 5, 0, "a", began)}}
	got = diagnose(t, fakeHost{}, &self).Findings
	// (A finding of its own since the drop-in merge: self-deadlock.)
	if len(got) != 1 || got[0].Kind != report.SelfDeadlock {
		t.Fatalf("self-lock: got %v; want one self-deadlock", kinds(got))
	}
	f := got[0]
	if strings.Contains(f.Summary, "goroutines wait for each other") || strings.Contains(f.Next, "global order") {
		t.Errorf("self-lock: got %q / %q; want it worded for one goroutine holding the lock it waits for", f.Summary, f.Next)
	}
}

func kinds(fs []report.Finding) []report.Kind {
	var out []report.Kind
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}

// A holder that looks dead in one snapshot but has released the lock by
// the next (it exited cleanly in between) is never reported.
func TestDiagnoseConfirms(t *testing.T) {
	first := &arena.Snapshot{Taken: t0, Processes: procs(pA, pB),
		Locks:   []arena.Lock{held(0, "q", pA, 5, t0)},
		Waiters: []arena.Waiter{waiting(0, pB, 7, 0, "q", t0)}}
	later := &arena.Snapshot{Taken: t0.Add(time.Millisecond), Processes: procs(pA, pB),
		Locks: []arena.Lock{{Index: 0, Name: "q"}}}
	tests := []struct {
		name  string
		snaps []*arena.Snapshot
		want  int
	}{
		{"transient", []*arena.Snapshot{first, later, later, later}, 0},
		{"persistent", []*arena.Snapshot{first, first}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := diagnose(t, fakeHost{pA: proc.Gone}, tt.snaps...)
			if len(r.Findings) != tt.want {
				t.Errorf("got %d findings %v; want %d", len(r.Findings), kinds(r.Findings), tt.want)
			}
		})
	}
}

// Convert keeps what the diagnosis needs of every record: the holder
// named by the word alone while its record is written, the robust flag
// behind "the kernel marked it", a clean exit, the process info, events and
// the torn count.
func TestConvert(t *testing.T) {
	died := held(1, "d", pB, 9, t0)
	died.HolderPID, died.OwnerDied = 0, true
	died.Token, died.Holder.Token = 41, 41
	noRecord := arena.Lock{Index: 2, Name: "w", Word: 300, HolderPID: 300, Token: 77}
	lost := arena.Lock{Index: 3, Name: "lost", OwnerDied: true}
	ps := procs(pA, pB, pC)
	ps[0].State, ps[0].Exited = arena.ProcExited, t0
	ps[1].Robust = true
	ps[2].Info = &arena.ProcessInfo{Role: "writer", Args: []string{"demo", "--hang"}}
	s := &arena.Snapshot{Dir: "run", Taken: t0, Torn: 2, Processes: ps,
		Locks:   []arena.Lock{held(0, "a", pA, 5, t0), died, noRecord, lost},
		Waiters: []arena.Waiter{waiting(0, pC, 4, 1, "d", t0), waiting(1, pA, 6, 42, "gone", t0)},
		Events:  []arena.Event{{Seq: 7, Kind: arena.EventOwnerDied, PID: pB.PID, Start: pB.Start, Goroutine: 9, LockName: "d", Time: t0, Token: 41}}}
	got := lockregsrc.Convert(s)
	if got.Run != "run" || !got.Taken.Equal(t0) || len(got.Notes) != 1 || got.WaitLabel != arena.WaitLabel {
		t.Errorf("got run %q taken %v notes %q label %q", got.Run, got.Taken, got.Notes, got.WaitLabel)
	}
	if p := got.Processes[0]; !p.Closed || !p.ClosedAt.Equal(t0) {
		t.Errorf("got process %+v; want closed at t0", p)
	}
	if p := got.Processes[2]; p.Role != "writer" || p.Command != "demo --hang" {
		t.Errorf("got process %+v; want the writer's role and command", p)
	}
	if l := got.Locks[0]; l.Kind != lockregsrc.Kind || len(l.Holders) != 1 || l.Holders[0].ID != pA || l.Abandoned != nil {
		t.Errorf("got lock %+v; want held by pA", l)
	}
	for i, want := range []string{"false", "true", "false"} {
		if p := got.Processes[i]; !slices.Equal(p.Facts.Extra, []lockstate.Fact{{Name: lockregsrc.FactRobust, Value: want, Raw: true}}) {
			t.Errorf("process %d's facts %v; want robust %s", i, p.Facts.Extra, want)
		}
	}
	if l := got.Locks[1]; l.Abandoned == nil || l.Abandoned.Reason != lockregsrc.OwnerDied || l.Abandoned.Says != "the kernel marked it OWNER_DIED" || len(l.Waiters) != 1 {
		t.Errorf("got lock %+v; want abandoned, the kernel's proof, one waiter", l)
	}
	// The dead holder's token, from its record, shown; the counter raw.
	if l := got.Locks[1]; !slices.Equal(l.Facts.Extra, []lockstate.Fact{{Name: lockregsrc.FactToken, Value: "41"},
		{Name: lockregsrc.FactWord, Value: "0x000000c8", Raw: true}, {Name: lockregsrc.FactCounter, Value: "41", Raw: true}}) {
		t.Errorf("got lock d's facts %v; want token 41, word, counter", l.Facts.Extra)
	}
	// A holder named by the word alone: no token is claimed for it (the
	// counter may still be the previous hold's).
	if l := got.Locks[2]; len(l.Holders) != 1 || l.Holders[0].ID != pC || l.Holders[0].Goroutine != 0 ||
		!slices.Equal(l.Facts.Extra, []lockstate.Fact{{Name: lockregsrc.FactWord, Value: "0x0000012c", Raw: true}, {Name: lockregsrc.FactCounter, Value: "77", Raw: true}}) {
		t.Errorf("got lock %+v; want held by pid 300 with its start time, goroutine unknown, no token", l)
	}
	if l := got.Locks[3]; len(l.Holders) != 0 || l.Abandoned == nil || !strings.Contains(l.Abandoned.Says, "a waiter proved") {
		t.Errorf("got lock %+v; want abandoned by nobody named, a waiter's proof", l)
	}
	if e := got.Events[0]; e.Kind != "owner-died" || e.ID != pB || e.Lock.Name != "d" || e.Token != 41 {
		t.Errorf("got event %+v", e)
	}
	if st, ok := got.Stacks.Stack(pA, 0); ok || st != nil {
		t.Errorf("stack 0: got %v %v; want none", st, ok)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	_, err := lockregsrc.New(dir).Read(context.Background())
	if !errors.Is(err, lockreg.ErrNotRun) {
		t.Errorf("an empty directory: got %v; want lockreg.ErrNotRun", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lockregsrc.New(dir).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended context: got %v; want context.Canceled", err)
	}
}
