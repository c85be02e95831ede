package report

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
)

// The WAITERS table keeps a lock's queue when some of its waiters have no
// time (sessions of etcd's own lock): a waiter queued after one with a
// time is not listed before it; locks whose waiters all have times are
// ordered by them, and the locks' waiters merged, longest waiting first.
func TestWaiterRowsOrder(t *testing.T) {
	var none time.Time
	snap := fakeSnap(nil,
		// Queue order: C (since t0+1s), then B with no time.
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), t0)},
			waiters: []lockstate.Waiter{wantW(g(pC, 3), t0.Add(time.Second)), wantW(g(pB, 2), none)}},
		// Times known, listed out of order: sorted by time.
		fakeLock{name: "r", holders: []lockstate.Holder{wr(g(pA, 5), t0)},
			waiters: []lockstate.Waiter{wantW(g(pC, 7), t0.Add(3*time.Second)), wantW(g(pB, 6), t0)}})
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{snap}}}, Host: &fakeHost{}}
	r, err := Diagnose(context.Background(), src, Options{StuckAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		lock string
		pid  int
	}
	var got []row
	for _, w := range r.Waiters {
		got = append(got, row{w.Lock, w.PID})
	}
	want := []row{{"r", pB.PID}, {"q", pC.PID}, {"q", pB.PID}, {"r", pC.PID}}
	if !slices.Equal(got, want) {
		t.Errorf("waiters %v; want %v (q's queue kept, r by time, merged by time)", got, want)
	}
}
