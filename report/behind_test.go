package report

import (
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// TestDeadHolderBehind: the goroutines stuck behind a dead holder's
// waiters, through locks of another kind, are listed in the dead-holder
// finding, breadth first, and a goroutine stuck twice is listed once.
func TestDeadHolderBehind(t *testing.T) {
	// pA g1 died holding x. pB g2 waits for x holding m (another kind);
	// pB g3 waits for m holding n; pC g4 and pB g5 wait for n; pC g6 waits
	// for x too.
	s := fakeSnap(nil,
		fakeLock{name: "x", holders: []lockstate.Holder{wr(g(pA, 1), t0)},
			waiters: []lockstate.Waiter{wantW(g(pB, 2), t0), wantW(g(pC, 6), t0)}},
		fakeLock{name: "m", holders: []lockstate.Holder{wr(g(pB, 2), t0)}, waiters: []lockstate.Waiter{wantW(g(pB, 3), t0)}},
		fakeLock{name: "n", holders: []lockstate.Holder{wr(g(pB, 3), t0)},
			waiters: []lockstate.Waiter{wantW(g(pC, 4), t0), wantW(g(pB, 5), t0)}},
	)
	s.Locks[1].Kind = "mutex"
	r, err := diagnoseFake(&fakeHost{status: map[procid.ID]procid.Status{pA: procid.Gone}}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != DeadHolder {
		t.Fatalf("findings %+v; want one dead-holder", r.Findings)
	}
	f := r.Findings[0]
	var got []string
	for _, st := range f.Behind {
		got = append(got, partyText(st.Party)+">"+st.WaitsFor)
	}
	want := []string{"200/g3>m", "200/g5>n", "300/g4>n"}
	if len(got) != len(want) {
		t.Fatalf("behind %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("behind %v; want %v", got, want)
			break
		}
	}
	if wantSum := `2 goroutines wait for it, and 3 more behind them (waiting for "m" and "n")`; !strings.Contains(f.Summary, wantSum) {
		t.Errorf("summary %q lacks %q", f.Summary, wantSum)
	}
}
