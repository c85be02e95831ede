package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

func frames(fn string) []stackdump.Frame {
	return []stackdump.Frame{{Func: "runtime.gopark", File: "proc.go", Line: 1}, {Func: fn, File: "app.go", Line: 7}}
}

// stackOf returns a report's stack rows as "pid role lock source count".
func stackRows(r *Report) []string {
	var out []string
	for _, s := range r.Stacks {
		out = append(out, fmt.Sprintf("%s %s %s %s %d", pidText(s.Host, s.PID), s.Role, s.Lock, s.Source, s.Count))
	}
	return out
}

func TestStacks(t *testing.T) {
	long := t0.Add(-time.Minute)
	deadHolder := fakeSnap(nil,
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), long)},
			waiters: []lockstate.Waiter{wantW(g(pB, 2), long), wantW(g(pB, 3), long), wantW(g(pC, 4), long)},
			abandon: &lockstate.Proof{Reason: ownerDied, Says: "the kernel marked it OWNER_DIED"}})
	stuck := fakeSnap(nil,
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), long)},
			waiters: []lockstate.Waiter{wantW(g(pB, 2), long), wantW(g(pB, 3), long)}})
	remote := fakeSnap(map[procid.ID]procid.Status{pR: procid.Alive, pS: procid.Alive},
		fakeLock{name: "a", holders: []lockstate.Holder{wr(g(pR, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pS, 2), t0)}},
		fakeLock{name: "b", holders: []lockstate.Holder{wr(g(pS, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pR, 1), t0)}})
	waitSample := func(lock string, n int64) stackdump.Sample {
		return stackdump.Sample{Frames: frames("main.send"), Count: n, Labels: map[string]string{"fake.wait": lock}}
	}
	tests := []struct {
		name   string
		snap   *lockstate.Snapshot
		status map[procid.ID]procid.Status
		opts   Options
		probes *fakeProbes // nil: no Stacks source
		want   []string
		notes  []string // substrings, one per note
		doing  string
		traced []procid.ID // the processes whose live goroutines are asked for
	}{
		{
			name: "dead holder: its recorded stack; live waiters from their profile; a dead waiter's record",
			snap: deadHolder, status: map[procid.ID]procid.Status{pA: procid.Gone, pC: procid.Gone},
			probes: &fakeProbes{prof: map[procid.ID]*stackdump.Profile{pB: {Samples: []stackdump.Sample{
				waitSample("q", 2), waitSample("other", 5), {Frames: frames("main.idle"), Count: 9}}}}},
			want: []string{"100 holder q dictionary 1", "200 waiter q probe 2", "300 waiter q dictionary 1"},
		},
		{
			name: "a profile without the wait label: the recorded wait sites",
			snap: deadHolder, status: map[procid.ID]procid.Status{pA: procid.Gone},
			probes: &fakeProbes{prof: map[procid.ID]*stackdump.Profile{pB: {Samples: []stackdump.Sample{{Frames: frames("main.idle"), Count: 9}}},
				pC: {}}},
			want: []string{"100 holder q dictionary 1", "200 waiter q dictionary 1", "200 waiter q dictionary 1", "300 waiter q dictionary 1"},
		},
		{
			name: "probes that do not answer: a note each, the records",
			snap: deadHolder, status: map[procid.ID]procid.Status{pA: procid.Gone},
			probes: &fakeProbes{err: errors.New("connection refused")},
			want:   []string{"100 holder q dictionary 1", "200 waiter q dictionary 1", "200 waiter q dictionary 1", "300 waiter q dictionary 1"},
			notes:  []string{"the probe of pid 200 did not answer (connection refused)", "the probe of pid 300 did not answer"},
		},
		{
			name: "no probes to ask: a note each",
			snap: deadHolder, status: map[procid.ID]procid.Status{pA: procid.Gone},
			want:  []string{"100 holder q dictionary 1", "200 waiter q dictionary 1", "200 waiter q dictionary 1", "300 waiter q dictionary 1"},
			notes: []string{"pid 200's probe was not asked", "pid 300's probe was not asked"},
		},
		{
			name: "stuck holder: its live goroutines say what it does; waiters elsewhere from their profile",
			snap: stuck,
			probes: &fakeProbes{live: map[procid.ID]*stackdump.Snapshot{
				pA: {Goroutines: []stackdump.Goroutine{{ID: 1, State: "IO wait", Frames: frames("main.write")}}},
			}, prof: map[procid.ID]*stackdump.Profile{pB: {Samples: []stackdump.Sample{waitSample("q", 2)}}}},
			want:   []string{"100 holder q dictionary 1", "100 holder q probe-trace 1", "200 waiter q probe 2"},
			doing:  "IO wait in runtime.gopark < main.write",
			traced: []procid.ID{pA},
		},
		{
			name: "stuck holder with TextDumps: its text dump, as before traces",
			snap: stuck, opts: Options{TextDumps: true},
			probes: &fakeProbes{text: map[procid.ID]*stackdump.Snapshot{
				pA: {Goroutines: []stackdump.Goroutine{{ID: 1, State: "IO wait", Frames: frames("main.write")}}},
			}, prof: map[procid.ID]*stackdump.Profile{pB: {Samples: []stackdump.Sample{waitSample("q", 2)}}}},
			want:  []string{"100 holder q dictionary 1", "100 holder q probe-text 1", "200 waiter q probe 2"},
			doing: "IO wait in runtime.gopark < main.write",
		},
		{
			name: "stuck holder and its waiters in one process: one answer",
			snap: fakeSnap(nil, fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), long)},
				waiters: []lockstate.Waiter{wantW(g(pA, 2), long), wantW(g(pA, 3), long)}}),
			probes: &fakeProbes{live: map[procid.ID]*stackdump.Snapshot{
				pA: {Goroutines: []stackdump.Goroutine{
					{ID: 1, State: "chan send", Frames: frames("main.write")},
					{ID: 2, State: "sync.Mutex.Lock", Frames: frames("main.send")},
					{ID: 3, State: "sync.Mutex.Lock", Frames: frames("main.send")},
					{ID: 4, State: "select", Frames: frames("main.other")}}},
			}},
			want:   []string{"100 holder q dictionary 1", "100 holder q probe-trace 1", "100 waiter q probe-trace 2"},
			doing:  "chan send in runtime.gopark < main.write",
			traced: []procid.ID{pA},
		},
		{
			name: "the live goroutines cannot be read (tracer in use): the profile, and a note",
			snap: stuck,
			probes: &fakeProbes{liveErr: errors.New("the execution tracer is in use"), prof: map[procid.ID]*stackdump.Profile{
				pA: {Samples: []stackdump.Sample{{Frames: frames("main.write"), Count: 1}}},
				pB: {Samples: []stackdump.Sample{waitSample("q", 2)}}}},
			want:   []string{"100 holder q dictionary 1", "200 waiter q probe 2"},
			notes:  []string{"pid 100's live goroutines could not be read (the execution tracer is in use): its stuck holder's live stack is missing; 'lockwatch stacks --text 100'"},
			traced: []procid.ID{pA},
		},
		{
			name: "a stuck holder running when traced: a note; a waiter running: its record",
			snap: fakeSnap(nil, fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), long)},
				waiters: []lockstate.Waiter{wantW(g(pA, 2), long), wantW(g(pA, 3), long)}}),
			probes: &fakeProbes{live: map[procid.ID]*stackdump.Snapshot{
				pA: {Goroutines: []stackdump.Goroutine{{ID: 2, State: "sync.Mutex.Lock", Frames: frames("main.send")}}},
			}},
			want:   []string{"100 holder q dictionary 1", "100 waiter q dictionary 1", "100 waiter q probe-trace 1"},
			notes:  []string{`pid 100 goroutine 1, stuck holding "q", was running or had ended when its stacks were read (probe-trace)`},
			traced: []procid.ID{pA},
		},
		{
			name: "a loop across two other machines: no probe asked, the records",
			snap: remote, probes: &fakeProbes{},
			want:  []string{"db2/100 waiter b dictionary 1", "db3/400 waiter a dictionary 1"},
			notes: []string{"pid 100 is on db2", "pid 400 is on db3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probes Stacks
			if tt.probes != nil {
				probes = tt.probes
			}
			r, err := diagnoseFakeWith(tt.opts, &fakeHost{status: tt.status}, probes, tt.snap)
			if err != nil {
				t.Fatal(err)
			}
			got := stackRows(r)
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got stacks\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(r.Notes) != len(tt.notes) {
				t.Fatalf("got notes %q; want %d", r.Notes, len(tt.notes))
			}
			for i, n := range tt.notes {
				if !strings.Contains(r.Notes[i], n) {
					t.Errorf("note %d: got %q; want it to say %q", i, r.Notes[i], n)
				}
			}
			if tt.doing != "" && (len(r.Findings) == 0 || r.Findings[0].Doing != tt.doing) {
				t.Errorf("got findings %+v; want the first doing %q", r.Findings, tt.doing)
			}
			if tt.probes != nil {
				if traced := tt.probes.askedTraces; !slices.Equal(traced, tt.traced) {
					t.Errorf("live goroutines asked of %v; want %v", traced, tt.traced)
				}
				for _, id := range tt.probes.asked {
					if id.Host != "" {
						t.Errorf("asked the probe of %v, on another machine", id)
					}
				}
			}
		})
	}
}

// Every party of the report has its call site, skipping the lock's own
// frames.
func TestWhere(t *testing.T) {
	snap := fakeSnap(nil, fakeLock{name: "rw", holders: []lockstate.Holder{rd(g(pA, 1), t0), rd(g(pB, 2), t0)},
		waiters: []lockstate.Waiter{wantW(g(pC, 3), t0), {Party: g(pC, 4), Since: t0, Stack: 9999}}})
	r, err := diagnoseFake(&fakeHost{}, nil, snap)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Locks[0]
	if len(l.Holders) != 2 || l.Holder == nil || l.Holder.Where == nil || l.Holder.Where.Func != "main.site1" {
		t.Fatalf("got lock %+v; want two holders, the first acquired at main.site1", l)
	}
	if w := l.Holders[1].Where; w == nil || w.Func != "main.site2" || w.Line != 2 {
		t.Errorf("got second holder at %+v; want main.site2 line 2", w)
	}
	if w := r.Waiters[0].Where; w == nil || w.Func != "main.site1003" {
		t.Errorf("got waiter at %+v; want main.site1003", w)
	}
	if w := r.Waiters[1].Where; w != nil {
		t.Errorf("got waiter with an unknown stack at %+v; want none", w)
	}
}

func TestCallSite(t *testing.T) {
	tests := []struct {
		name   string
		frames []stackdump.Frame
		want   string
		ok     bool
	}{
		{"program frame after machinery", []stackdump.Frame{{Func: "sync.(*Mutex).Lock"}, {Func: "main.f"}}, "main.f", true},
		{"only machinery: the innermost", []stackdump.Frame{{Func: "runtime.gopark"}, {Func: "syscall.Syscall"}}, "runtime.gopark", true},
		{"no frames", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := callSite(tt.frames)
			if f.Func != tt.want || ok != tt.ok {
				t.Errorf("got %q %v; want %q %v", f.Func, ok, tt.want, tt.ok)
			}
		})
	}
}

// A finding seen once is not reported unless a second snapshot shows it
// again, or the backend proved the death.
func TestConfirm(t *testing.T) {
	held := fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}}
	heldB := fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}}
	freed := fakeLock{name: "q"}
	abandoned := held
	abandoned.abandon = &lockstate.Proof{Reason: ownerDied}
	dead := map[procid.ID]procid.Status{pA: procid.Gone, pB: procid.Gone}
	tests := []struct {
		name  string
		snaps []*lockstate.Snapshot
		want  int
		reads int
	}{
		{"transient", []*lockstate.Snapshot{fakeSnap(nil, held), fakeSnap(nil, freed)}, 0, 2},
		{"persistent", []*lockstate.Snapshot{fakeSnap(nil, held)}, 1, 2},
		{"proven by the backend: one read", []*lockstate.Snapshot{fakeSnap(nil, abandoned), fakeSnap(nil, freed)}, 1, 1},
		{"another finding each time: given up after the last round", []*lockstate.Snapshot{
			fakeSnap(nil, held), fakeSnap(nil, heldB), fakeSnap(nil, held), fakeSnap(nil, heldB)}, 0, 4},
		{"a finding that replaces another is confirmed by the next read", []*lockstate.Snapshot{
			fakeSnap(nil, held), fakeSnap(nil, heldB), fakeSnap(nil, heldB)}, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{snaps: tt.snaps}
			r, err := Diagnose(t.Context(), Sources{Locks: []lockstate.Source{src}, Host: &fakeHost{status: dead}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Findings) != tt.want || src.n != tt.reads {
				t.Errorf("got %d findings %v after %d reads; want %d after %d", len(r.Findings), summaries(r.Findings), src.n, tt.want, tt.reads)
			}
		})
	}
}

func TestDiagnoseErrors(t *testing.T) {
	if _, err := Diagnose(t.Context(), Sources{Host: &fakeHost{}}, Options{}); !errors.Is(err, ErrNoSource) {
		t.Errorf("no source: got %v; want ErrNoSource", err)
	}
	bad := errors.New("arena truncated")
	src := Sources{Locks: []lockstate.Source{&fakeSource{err: bad}}, Host: &fakeHost{}}
	if _, err := Diagnose(t.Context(), src, Options{}); !errors.Is(err, bad) {
		t.Errorf("failing source: got %v; want its own error", err)
	}
	// A source that fails on the confirming read.
	flaky := &flakySource{snap: fakeSnap(nil, fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), t0)}}), err: bad}
	src = Sources{Locks: []lockstate.Source{flaky}, Host: &fakeHost{status: map[procid.ID]procid.Status{pA: procid.Gone}}}
	if _, err := Diagnose(t.Context(), src, Options{}); !errors.Is(err, bad) {
		t.Errorf("failing confirming read: got %v; want its error", err)
	}
}

type flakySource struct {
	snap *lockstate.Snapshot
	err  error
	n    int
}

func (f *flakySource) Read(context.Context) (*lockstate.Snapshot, error) {
	f.n++
	if f.n > 1 {
		return nil, f.err
	}
	return f.snap, nil
}

// The same trouble has the same key however long it lasts and however
// many wait; another holder or lock is another key.
func TestFindingKey(t *testing.T) {
	h := Party{PID: 1, Start: 2, Goroutine: 3, State: "dead", For: Duration(time.Second)}
	a := Finding{Kind: DeadHolder, Lock: "q", LockKind: "lockreg", Holder: &h, Summary: "one"}
	h2 := h
	h2.For = Duration(time.Hour)
	b := Finding{Kind: DeadHolder, Lock: "q", LockKind: "lockreg", Holder: &h2, Waiters: []Party{{PID: 9}}, Summary: "two"}
	if a.Key() != b.Key() {
		t.Errorf("got keys %q and %q; want them equal", a.Key(), b.Key())
	}
	h3 := h
	h3.Host = "db2"
	for _, c := range []Finding{
		{Kind: DeadHolder, Lock: "r", LockKind: "lockreg", Holder: &h},
		{Kind: DeadHolder, Lock: "q", LockKind: "etcd", Holder: &h},
		{Kind: DeadHolder, Lock: "q", LockKind: "lockreg", Holder: &h3},
		{Kind: StaleWaiter, Lock: "q", LockKind: "lockreg", Waiters: []Party{h}},
	} {
		if c.Key() == a.Key() {
			t.Errorf("got key %q for %+v too; want another", c.Key(), c)
		}
	}
}

func TestKinds(t *testing.T) {
	var prev = -1
	for _, k := range []Kind{DeadHolder, LostLock, Cycle, StuckHolder, StaleWaiter, "no-such-kind"} {
		if k.rank() <= prev {
			t.Errorf("%s ranks %d, after %d; want the kinds in severity order, unknown last", k, k.rank(), prev)
		}
		prev = k.rank()
	}
	for k, want := range map[Kind]bool{DeadHolder: true, Cycle: true, StuckHolder: true, StaleWaiter: false, LostLock: false, "no-such-kind": false} {
		if k.Deadlock() != want {
			t.Errorf("%s.Deadlock() = %v; want %v", k, k.Deadlock(), want)
		}
	}
	r := &Report{Findings: []Finding{{Kind: StaleWaiter}}}
	if r.Deadlock() {
		t.Error("a stale waiter alone: got Deadlock; want none")
	}
	r.Findings = append(r.Findings, Finding{Kind: Cycle})
	if !r.Deadlock() {
		t.Error("a cycle: got no Deadlock")
	}
	if !r.Has(Cycle) || !r.Has(StaleWaiter) || r.Has(LockOrder) {
		t.Errorf("Has on findings %v: want cycle and stale-waiter, not lock-order", r.Findings)
	}
}

// The JSON is the documented schema: lists are never null, durations are
// milliseconds, hosts and read flags appear only where they apply, and a
// report reads back as it was written.
func TestJSON(t *testing.T) {
	snap := fakeSnap(map[procid.ID]procid.Status{pR: procid.Expired},
		fakeLock{name: "jobs", holders: []lockstate.Holder{rd(g(pR, 1), t0.Add(-1500*time.Millisecond)), rd(g(pA, 2), t0)},
			waiters: []lockstate.Waiter{wantW(g(pB, 3), t0)}})
	snap.Unlisted = map[string]int{"fake lock": 5}
	r, err := diagnoseFake(&fakeHost{}, nil, snap)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"host":"db2"`, `"read":true`, `"for_ms":1500`, `"death":"lease-expired"`, `"state":"expired"`,
		`"kind":"fake-rw"`, `"lock_kind":"fake-rw"`, `"holders":[`,
		`"unlisted":{"fake lock":5}`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Findings[0].Key() != r.Findings[0].Key() || time.Duration(back.Findings[0].Holder.For) != 1500*time.Millisecond {
		t.Errorf("read back %+v; want %+v", back.Findings[0], r.Findings[0])
	}
	if err := json.Unmarshal([]byte(`"x"`), new(Duration)); err == nil {
		t.Error("a duration that is not a number: got no error")
	}
	empty, err := diagnoseFake(&fakeHost{}, nil, &lockstate.Snapshot{Run: "empty", Taken: t0})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(empty)
	if strings.Contains(string(b), "null") {
		t.Errorf("empty report has a null list: %s", b)
	}
}

// The tables show hosts, readers and each holder of a lock; colours only
// when asked.
func TestWrite(t *testing.T) {
	long := t0.Add(-time.Minute)
	snap := fakeSnap(map[procid.ID]procid.Status{pR: procid.Expired},
		fakeLock{name: "jobs", holders: []lockstate.Holder{rd(g(pR, 1), long), rd(g(pA, 2), t0)},
			waiters: []lockstate.Waiter{wantW(g(pB, 3), long), wantR(g(pC, 4), t0)}},
		fakeLock{name: "idle"})
	snap.Processes[0].Closed, snap.Processes[0].ClosedAt = true, t0
	snap.Processes = append(snap.Processes, lockstate.Process{ID: procid.ID{PID: 555, Start: 1}})
	snap.Notes = []string{"1 record was left out"}
	snap.Unlisted = map[string]int{"fake lock": 4}
	r, err := diagnoseFake(&fakeHost{status: map[procid.ID]procid.Status{pC: procid.Unknown}}, nil, snap)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Write(&b, Style{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"DEAD-HOLDER pid 100 on db2 [r100] (expired) holds \"jobs\"",
		"LOCKS (1 free not shown; 4 free fake locks)",
		"jobs  held (read)  db2/100",
		"jobs  held (read)  100",
		"main.site1 site.go:1",
		"jobs (read)",
		"cmd-555",
		"closed 12:00:00.000",
		"RECENT EVENTS",
		"pid 100 on db2, holder of \"jobs\", goroutine 1 [expired] (dictionary):",
		"note: 1 record was left out",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := r.Write(&b, Style{Color: true, AllLocks: true}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, red) || !strings.Contains(out, "idle") {
		t.Errorf("coloured output with every lock lacks red or the free lock:\n%s", out)
	}
	if err := r.Write(failWriter{}, Style{}); err == nil {
		t.Error("a failing writer: got no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderHelpers(t *testing.T) {
	for _, c := range []struct {
		noun string
		n    int
		want string
	}{{"drop-in mutex", 1, "drop-in mutex"}, {"drop-in mutex", 2, "drop-in mutexes"}, {"lock", 0, "locks"}, {"lease", 3, "leases"}} {
		if got := plural(c.noun, c.n); got != c.want {
			t.Errorf("plural(%q, %d) = %q; want %q", c.noun, c.n, got, c.want)
		}
	}
	if got := stackTitle(StackRow{PID: 1, Role: "waiter", Count: 12, Lock: "q", Source: "probe-text",
		Goroutines: []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}); got != `pid 1, waiters (12 goroutines) of "q", goroutine 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (probe-text):` {
		t.Errorf("got title %q", got)
	}
	for d, want := range map[time.Duration]string{0: "-", 1234567 * time.Nanosecond: "1ms", 1234 * time.Millisecond: "1.2s"} {
		if got := dur(Duration(d)); got != want {
			t.Errorf("dur(%v) = %q; want %q", d, got, want)
		}
	}
	if got := truncate(strings.Repeat("x", 50), 10); got != "xxxxxxx..." {
		t.Errorf("truncate: got %q", got)
	}
	if got := where(&FrameJSON{Func: "a/b.c"}); got != "b.c" {
		t.Errorf("where without a file: got %q", got)
	}
	if got := clock(time.Time{}); got != "-" {
		t.Errorf("clock of zero: got %q", got)
	}
}

// TestProbeConcurrency: with 20 processes to ask, no more than
// ProbeConcurrency probes are asked at once, and all of them are asked.
func TestProbeConcurrency(t *testing.T) {
	const procs, limit = 20, 3
	const quiescent = 50 * time.Millisecond // the asker would have asked more by then
	long := t0.Add(-time.Minute)
	var locks []fakeLock
	prof := make(map[procid.ID]*stackdump.Profile)
	for i := range procs {
		holder, waiter := procid.ID{PID: 1000 + 2*i, Start: 1}, procid.ID{PID: 1001 + 2*i, Start: 1}
		locks = append(locks, fakeLock{name: fmt.Sprintf("l%02d", i), holders: []lockstate.Holder{wr(g(holder, 1), long)},
			waiters: []lockstate.Waiter{wantW(g(waiter, 2), long)}})
		prof[waiter] = &stackdump.Profile{}
		prof[holder] = &stackdump.Profile{}
	}
	p := &fakeProbes{prof: prof, live: map[procid.ID]*stackdump.Snapshot{}, gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := diagnoseFakeWith(Options{ProbeConcurrency: limit, LiveStacks: AllLiveStacks}, &fakeHost{}, p, fakeSnap(nil, locks...))
		done <- err
	}()
	busy := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.busy
	}
	for deadline := time.Now().Add(10 * time.Second); busy() < limit; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes asked at once after 10s; want %d", busy(), limit)
		}
	}
	time.Sleep(quiescent) // asserting that no more are asked while these wait
	close(p.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.most != limit {
		t.Errorf("at most %d probes asked at once; want %d", p.most, limit)
	}
	// Each stuck holder's process is asked for its goroutines (and, as
	// none answers them, its profile); each waiter's for its profile.
	if len(p.askedTraces) != procs || len(p.asked) != 3*procs {
		t.Errorf("asked %d traces and %d answers in all; want %d and %d", len(p.askedTraces), len(p.asked), procs, 3*procs)
	}
}

// TestLiveStacksBound: of 20 processes with stuck holders (and 20 with
// their waiters), only LiveStacks are asked for live stacks, those of the
// first findings' holders, after the one a user named (Options.First);
// every stuck holder still gets its recorded stack, and one note says how
// many were not asked and how to ask them.
func TestLiveStacksBound(t *testing.T) {
	const procs, limit = 20, 3
	long := t0.Add(-time.Minute)
	var locks []fakeLock
	live := make(map[procid.ID]*stackdump.Snapshot)
	var holders []procid.ID
	for i := range procs {
		// Lock names in reverse pid order: the findings' order (by lock
		// name), not the pids', decides who is asked.
		holder, waiter := procid.ID{PID: 1000 + 2*i, Start: 1}, procid.ID{PID: 1001 + 2*i, Start: 1}
		holders = append(holders, holder)
		locks = append(locks, fakeLock{name: fmt.Sprintf("l%02d", procs-1-i), holders: []lockstate.Holder{wr(g(holder, 1), long)},
			waiters: []lockstate.Waiter{wantW(g(waiter, 2), long)}})
		live[holder] = &stackdump.Snapshot{Goroutines: []stackdump.Goroutine{{ID: 1, State: "chan receive",
			Frames: []stackdump.Frame{{Func: "main.stuck", File: "main.go", Line: 7}}}}}
	}
	for _, tc := range []struct {
		limit     int
		first     procid.ID // the process a user named
		asked     []procid.ID
		wantNote  bool
		wantTrace int // holders' live stacks in the report
	}{
		{limit, procid.ID{}, []procid.ID{holders[procs-1], holders[procs-2], holders[procs-3]}, true, limit},
		{limit, holders[0], []procid.ID{holders[0], holders[procs-1], holders[procs-2]}, true, limit},
		{AllLiveStacks, procid.ID{}, nil, false, procs},
		{2 * procs, procid.ID{}, nil, false, procs},
	} {
		p := &fakeProbes{live: live, prof: map[procid.ID]*stackdump.Profile{}}
		r, err := diagnoseFakeWith(Options{LiveStacks: tc.limit, First: tc.first}, &fakeHost{}, p, fakeSnap(nil, locks...))
		if err != nil {
			t.Fatal(err)
		}
		if tc.asked != nil {
			got := slices.SortedFunc(slices.Values(p.asked), func(a, b procid.ID) int { return a.PID - b.PID })
			want := slices.SortedFunc(slices.Values(tc.asked), func(a, b procid.ID) int { return a.PID - b.PID })
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: asked %v; want the first findings' holders %v", tc.limit, got, want)
			}
		} else if len(p.askedTraces) != procs {
			t.Errorf("limit %d: %d processes asked for traces; want all %d", tc.limit, len(p.askedTraces), procs)
		}
		traced, recorded := 0, 0
		for _, st := range r.Stacks {
			switch {
			case st.Role == "holder" && st.Source == sourceTrace:
				traced++
			case st.Role == "holder" && st.Source == sourceDictionary:
				recorded++
			}
		}
		if traced != tc.wantTrace || recorded != procs {
			t.Errorf("limit %d: %d live and %d recorded holder stacks; want %d and %d", tc.limit, traced, recorded, tc.wantTrace, procs)
		}
		note := slices.ContainsFunc(r.Notes, func(n string) bool {
			return strings.Contains(n, fmt.Sprintf("live stacks were asked of %d of the %d processes involved", limit, 2*procs)) &&
				strings.Contains(n, "--live-stacks=0")
		})
		if note != tc.wantNote {
			t.Errorf("limit %d: the note on processes not asked is there: %v; want %v (notes %q)", tc.limit, note, tc.wantNote, r.Notes)
		}
	}
}

// The free locks two sources leave unlisted are counted together.
func TestUnlistedSummed(t *testing.T) {
	a := &lockstate.Snapshot{Run: "a", Taken: t0, Unlisted: map[string]int{"fake lock": 2, "other lock": 1}}
	b := &lockstate.Snapshot{Run: "b", Taken: t0, Unlisted: map[string]int{"fake lock": 3}}
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{a}}, &fakeSource{snaps: []*lockstate.Snapshot{b}}},
		Host: &fakeHost{}}
	r, err := Diagnose(context.Background(), src, Options{StuckAfter: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"fake lock": 5, "other lock": 1}; !maps.Equal(r.Unlisted, want) {
		t.Errorf("unlisted %v; want %v", r.Unlisted, want)
	}
}

// A backend's own facts reach the report as they are: in JSON for every
// lock, in the table for the locks the table lists, escaped.
func TestExtraFacts(t *testing.T) {
	snap := fakeSnap(nil,
		fakeLock{name: "held", holders: []lockstate.Holder{wr(g(pA, 1), t0.Add(-time.Second))}},
		fakeLock{name: "idle"})
	snap.Locks[0].Facts.Extra = []lockstate.Fact{{Name: "type", Value: "FLOCK WRITE"}, {Name: "file", Value: "/tmp/a\x1b]0;x\a.lock"},
		{Name: "word", Value: "0x40000064", Raw: true}}
	snap.Locks[1].Facts.Extra = []lockstate.Fact{{Name: "type", Value: "POSIX READ"}}
	for i := range snap.Processes {
		if snap.Processes[i].ID == pA {
			snap.Processes[i].Facts.Extra = []lockstate.Fact{{Name: "robust", Value: "true", Raw: true}, {Name: "session", Value: "s\x1b1"}}
		}
	}
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{snap}}}, Host: &fakeHost{}}
	r, err := Diagnose(context.Background(), src, Options{StuckAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	facts := map[string][]Fact{}
	for _, l := range r.Locks {
		facts[l.Name] = l.Facts
	}
	if want := []Fact{{"type", "FLOCK WRITE", false}, {"file", "/tmp/a\x1b]0;x\a.lock", false}, {"word", "0x40000064", true}}; !slices.Equal(facts["held"], want) {
		t.Errorf("held's facts %v; want %v", facts["held"], want)
	}
	if want := []Fact{{"type", "POSIX READ", false}}; !slices.Equal(facts["idle"], want) {
		t.Errorf("idle's facts %v; want %v", facts["idle"], want)
	}
	var b strings.Builder
	if err := r.Write(&b, Style{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "LOCK DETAILS") || !strings.Contains(out, "type FLOCK WRITE, file /tmp/a") {
		t.Errorf("the table does not show held's facts:\n%s", out)
	}
	if strings.Contains(out, "0x40000064") || strings.Contains(out, "robust") {
		t.Errorf("the table shows a raw fact:\n%s", out)
	}
	if !strings.Contains(out, "PROCESS DETAILS") || !strings.Contains(out, "session s\\x1b1") {
		t.Errorf("the table does not show pid %d's facts:\n%s", pA.PID, out)
	}
	var procFacts []Fact
	for _, p := range r.Processes {
		if p.PID == pA.PID {
			procFacts = p.Facts
		}
	}
	if want := []Fact{{"robust", "true", true}, {"session", "s\x1b1", false}}; !slices.Equal(procFacts, want) {
		t.Errorf("pid %d's facts %v; want %v", pA.PID, procFacts, want)
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"word","value":"0x40000064","raw":true}`; !strings.Contains(string(j), want) {
		t.Errorf("the JSON report lacks %s:\n%s", want, j)
	}
	var dot strings.Builder
	if err := r.WriteDot(&dot); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dot.String(), "0x40000064") || !strings.Contains(dot.String(), "type: FLOCK WRITE") {
		t.Errorf("the graph shows a raw fact, or not the others:\n%s", dot.String())
	}
	if strings.Contains(out, "POSIX READ") {
		t.Errorf("the table shows the facts of a free lock it does not list:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b\a") {
		t.Errorf("a fact reached the terminal unescaped:\n%q", out)
	}
}
