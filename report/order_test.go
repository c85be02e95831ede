package report

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/lockstate"
)

// orderSnap is a snapshot with the edges "A>B" taken by party pA's
// goroutine 1, pB's goroutine 2, ... in turn; stack ids are 10*i+1 (held)
// and 10*i+2 (taken).
func orderSnap(edges ...string) *lockstate.Snapshot {
	s := fakeSnap(nil)
	parties := []lockstate.Party{g(pA, 1), g(pB, 2), g(pC, 3)}
	for i, e := range edges {
		from, to, _ := strings.Cut(e, ">")
		p := parties[i%len(parties)]
		s.Orders = append(s.Orders, lockstate.OrderEdge{From: lockstate.Key{Kind: fakeKind, Name: from},
			To: lockstate.Key{Kind: fakeKind, Name: to}, Party: p, FromStack: uint64(10*i + 1), ToStack: uint64(10*i + 2), Time: t0})
		if !slices.ContainsFunc(s.Processes, func(q lockstate.Process) bool { return q.ID == p.ID }) {
			s.Processes = append(s.Processes, lockstate.Process{ID: p.ID})
		}
	}
	return s
}

func TestLockOrderFindings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edges []string
		want  []string // each finding's loop, "A>B B>A"
	}{
		{"two locks both ways", []string{"A>B", "B>A"}, []string{"A>B B>A"}},
		{"three locks", []string{"A>B", "B>C", "C>A"}, []string{"A>B B>C C>A"}},
		{"consistent order", []string{"A>B", "A>C", "B>C", "C>D"}, nil},
		{"a lock after itself is no loop", []string{"A>A"}, nil},
		{"two separate inversions", []string{"A>B", "B>A", "X>Y", "Y>X"}, []string{"A>B B>A", "X>Y Y>X"}},
		{"shortest loop through the smallest lock", []string{"A>B", "B>C", "C>A", "C>B"}, []string{"A>B B>C C>A"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := diagnoseFake(&fakeHost{}, nil, orderSnap(tc.edges...))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range r.Findings {
				if f.Kind != LockOrder {
					t.Errorf("unexpected finding %s", f.Kind)
					continue
				}
				var loop []string
				for _, st := range f.Order {
					loop = append(loop, st.From+">"+st.To)
				}
				got = append(got, strings.Join(loop, " "))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q; want %q", got, tc.want)
			}
			if r.Deadlock() {
				t.Error("a lock-order finding made the report a deadlock")
			}
		})
	}
}

func TestLockOrderFinding(t *testing.T) {
	s := orderSnap("A>B", "B>A")
	s.OrdersDropped = 7
	r, err := diagnoseFake(&fakeHost{}, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	f := r.Findings[0]
	if f.Lock != "A" || f.LockKind != fakeKind || len(f.Order) != 2 {
		t.Fatalf("got %+v", f)
	}
	st := f.Order[1]
	if st.PID != pB.PID || st.Goroutine != 2 || st.Where == nil || st.Where.Func != "main.site12" ||
		st.HeldAt == nil || st.HeldAt.Func != "main.site11" || len(st.Stack) != 2 || len(st.HeldStack) != 2 {
		t.Errorf("second step: got %+v", st)
	}
	if want := "take A before B everywhere; the B-then-A order is taken at main.site12 site.go:12 (pid 200 goroutine 2)"; f.Next != want {
		t.Errorf("next: got %q; want %q", f.Next, want)
	}
	if r.OrdersDropped != 7 {
		t.Errorf("orders dropped: got %d; want 7", r.OrdersDropped)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"kind":"lock-order"`, `"order":[`, `"from":"A"`, `"held_at":{"func":"main.site1"`, `"held_stack":[`, `"orders_dropped":7`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("JSON lacks %s:\n%s", w, b)
		}
	}
	var text strings.Builder
	if err := r.Write(&text, Style{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"LOCK-ORDER lock order A -> B -> A can deadlock", "A -> B: pid 100", "took A at main.site1 site.go:1", "took A at main.site12 site.go:12"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, text.String())
		}
	}
}
