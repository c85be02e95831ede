package report

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// TestEndedRunClock: once every process of a run has ended, its
// durations run to the run's last record, not to the reading, and a note
// says so; while a process lives they run to the reading. (An ended run's
// HELD FOR grew with every attach.)
func TestEndedRunClock(t *testing.T) {
	last := t0.Add(3 * time.Second) // the waiter began waiting: the run's last record
	snap := func() *lockstate.Snapshot {
		s := fakeSnap(nil, fakeLock{name: "x", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), last)}})
		s.Taken = t0.Add(time.Hour) // read an hour later
		return s
	}
	for _, tc := range []struct {
		name   string
		status map[procid.ID]procid.Status
		held   time.Duration
		note   bool
	}{
		{"ended", map[procid.ID]procid.Status{pA: procid.Gone, pB: procid.Gone}, 3 * time.Second, true},
		{"a waiter alive", map[procid.ID]procid.Status{pA: procid.Gone}, time.Hour, false},
		{"a waiter unknown", map[procid.ID]procid.Status{pA: procid.Gone, pB: procid.Unknown}, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := diagnoseFake(&fakeHost{status: tc.status}, nil, snap())
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(r.Locks[0].Holder.For); got != tc.held {
				t.Errorf("held for %v; want %v", got, tc.held)
			}
			hasNote := slices.ContainsFunc(r.Notes, func(n string) bool { return strings.HasPrefix(n, "the run has ended") })
			if hasNote != tc.note {
				t.Errorf("notes %q: the run-has-ended note %v; want %v", r.Notes, hasNote, tc.note)
			}
		})
	}
}

// TestExitedProcess: a process that closed its registry and then ended
// is "exited", not "dead"; one that ended without closing it is dead.
func TestExitedProcess(t *testing.T) {
	s := fakeSnap(nil, fakeLock{name: "x", holders: []lockstate.Holder{wr(g(pA, 1), t0)}}, fakeLock{name: "y", holders: []lockstate.Holder{wr(g(pB, 2), t0)}})
	s.Locks[1].Holders = nil
	for i := range s.Processes {
		if s.Processes[i].ID == pB {
			s.Processes[i].Closed, s.Processes[i].ClosedAt = true, t0.Add(time.Second)
		}
	}
	r, err := diagnoseFake(&fakeHost{status: map[procid.ID]procid.Status{pA: procid.Gone, pB: procid.Gone}}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	states := map[int]string{}
	for _, p := range r.Processes {
		states[p.PID] = p.State + "/" + p.Exit
	}
	if states[pA.PID] != "dead/died" || states[pB.PID] != "exited/closed" {
		t.Errorf("states %v; want pid 100 dead/died, pid 200 exited/closed", states)
	}
}

// TestLockOrderEvents: the recent events of a lock-order finding are
// those of every lock of its loop (they were of its first lock alone).
func TestLockOrderEvents(t *testing.T) {
	s := orderSnap("A>B", "B>A")
	for i, name := range []string{"A", "B", "A", "B"} {
		s.Events = append(s.Events, lockstate.Event{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: "acquire",
			Lock: lockstate.Key{Kind: fakeKind, Name: name}, Party: g(pA, 1)})
	}
	r, err := diagnoseFake(&fakeHost{}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	locks := map[string]int{}
	for _, e := range r.Events {
		locks[e.Lock]++
	}
	if locks["A"] != 2 || locks["B"] != 2 {
		t.Errorf("events per lock %v; want A and B twice each", locks)
	}
}

// TestWriteDot: the graph of a dead holder with a chain behind it, across
// two hosts, with a hostile lock name: the dead process's cluster red and
// dashed, the finding's edges red, each host a cluster, every string
// quoted so that Graphviz reads the graph whole.
func TestWriteDot(t *testing.T) {
	hostile := "q\"uo\\te\n\x1b[2J"
	s := fakeSnap(nil,
		fakeLock{name: "x", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 2), t0)}},
		fakeLock{name: hostile, holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantR(g(pR, 3), t0)}},
	)
	r, err := diagnoseFake(&fakeHost{status: map[procid.ID]procid.Status{pA: procid.Gone}}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.WriteDot(&b); err != nil {
		t.Fatal(err)
	}
	dot := b.String()
	for _, want := range []string{
		"digraph lockwatch {",
		`label="host db2"`, `label="host this machine"`,
		`label="pid 100 [r100]\nDEAD"; style="rounded,dashed"; color=red;`,
		`"l:fake-rw/x" -> "g:/100/1000/1" [label="holds", style=solid, color=red`,
		`"g:/200/2000/2" -> "l:fake-rw/x" [label="waits", style=dashed, color=red`,
		`"g:db2/100/7/3" -> "l:fake-rw/q\"uo\\te\\x0a\\x1b[2J" [label="waits to read", style=dashed, color=red`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("graph lacks %s:\n%s", want, dot)
		}
	}
	if strings.ContainsAny(dot, "\x1b") {
		t.Errorf("raw escape in the graph:\n%q", dot)
	}
	if path, err := exec.LookPath("dot"); err == nil {
		cmd := exec.Command(path, "-Tsvg")
		cmd.Stdin = strings.NewReader(dot)
		var errs strings.Builder
		cmd.Stderr = &errs
		out, err := cmd.Output()
		if err != nil || errs.Len() > 0 || !strings.Contains(string(out), "<svg") {
			t.Errorf("dot -Tsvg: %v %s\n%s", err, errs.String(), dot)
		}
	}
}

// TestWriteDotCycle: a cycle across three processes, one link held by a
// reader, is a loop of six red edges (three waits, three holds), each
// process a cluster of its own.
func TestWriteDotCycle(t *testing.T) {
	s := fakeSnap(nil,
		fakeLock{name: "x", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}},
		fakeLock{name: "y", holders: []lockstate.Holder{rd(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pA, 1), t0)}},
		fakeLock{name: "z", holders: []lockstate.Holder{wr(g(pC, 3), t0)}, waiters: []lockstate.Waiter{wantR(g(pB, 2), t0)}},
	)
	r, err := diagnoseFake(&fakeHost{}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != Cycle {
		t.Fatalf("findings %+v; want one cycle", r.Findings)
	}
	var b strings.Builder
	if err := r.WriteDot(&b); err != nil {
		t.Fatal(err)
	}
	dot := b.String()
	if n := strings.Count(dot, "color=red, fontcolor=red"); n != 6 {
		t.Errorf("%d red edges; want 6:\n%s", n, dot)
	}
	for _, want := range []string{"subgraph cluster_p0 {", "subgraph cluster_p1 {", "subgraph cluster_p2 {",
		`"l:fake-rw/y" -> "g:/200/2000/2" [label="reads"`, `"g:/200/2000/2" -> "l:fake-rw/z" [label="waits to read"`} {
		if !strings.Contains(dot, want) {
			t.Errorf("graph lacks %s:\n%s", want, dot)
		}
	}
}

// TestWriteDotFacts: a lock's node shows its backend's facts, the first
// four, then how many more.
func TestWriteDotFacts(t *testing.T) {
	r := &Report{Schema: Schema, Run: "fake:test", Taken: t0, Findings: []Finding{},
		Locks: []LockRow{{Name: "f", Kind: "flock", State: "held", Holder: &Party{PID: 1, Start: 1, Goroutine: 0, Alive: true, State: "alive"},
			Facts: []Fact{{"type", "POSIX", false}, {"mode", "WRITE", false}, {"inode", "8:1:42", false}, {"range", "0-EOF", false}, {"path", "/x", false}, {"extra", "y", false}}}}}
	var b strings.Builder
	if err := r.WriteDot(&b); err != nil {
		t.Fatal(err)
	}
	if want := `[label="f\n(flock)\ntype: POSIX\nmode: WRITE\ninode: 8:1:42\nrange: 0-EOF\n(2 more facts)"`; !strings.Contains(b.String(), want) {
		t.Errorf("graph lacks %s:\n%s", want, b.String())
	}
}
