package report

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// TestLostLock: goroutines that lost a lock while holding it (a backend
// expired their lease) are a lost-lock finding while they live, naming the
// lock's new holder if it has one; a dead one is none; the lock without a
// holder reads "lost". Not a deadlock: nothing hangs.
func TestLostLock(t *testing.T) {
	snap := fakeSnap(map[procid.ID]procid.Status{pR: procid.Alive, pS: procid.Alive, pC: procid.Gone},
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pS, 1), t0)}},
		fakeLock{name: "e"},
		fakeLock{name: "d"})
	snap.Locks[0].Lost = []lockstate.Loss{{Holder: wr(g(pR, 5), t0), Says: "its lease 1f expired"}}
	snap.Locks[1].Lost = []lockstate.Loss{{Holder: wr(g(pR, 7), t0)}}
	snap.Locks[2].Lost = []lockstate.Loss{{Holder: wr(g(pC, 3), t0)}}
	snap.Processes = append(snap.Processes, lockstate.Process{ID: pR, Status: procid.Alive}, lockstate.Process{ID: pC, Status: procid.Gone})

	r, err := diagnoseFake(&fakeHost{}, nil, snap)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range r.Findings {
		got = append(got, string(f.Kind)+" "+f.Lock+" "+partyText(*f.Holder))
	}
	if want := []string{"lost-lock e db2/100/g7", "lost-lock q db2/100/g5"}; !slices.Equal(got, want) {
		t.Fatalf("findings %q; want %q", got, want)
	}
	if s := r.Findings[1].Summary; !strings.Contains(s, "(its lease 1f expired)") || !strings.Contains(s, "pid 400 on db3 [r400] g1 holds it now") {
		t.Errorf("summary %q; want the loss and the new holder", s)
	}
	if s := r.Findings[0].Summary; !strings.Contains(s, "nobody holds it now") {
		t.Errorf("summary %q; want nobody holding it", s)
	}
	if r.Deadlock() {
		t.Error("a lost lock reported as a deadlock")
	}
	states := map[string]string{}
	for _, l := range r.Locks {
		states[l.Name] = l.State
	}
	if states["q"] != "held" || states["e"] != "lost" || states["d"] != "lost" {
		t.Errorf("lock states %v; want q held, e and d lost", states)
	}
}

// TestRemoteStacks: with Sources.Remote, the processes of other machines
// are asked too, for text dumps only (never a profile); a lost lock's
// holder says what it does now; the stacks carry their host.
func TestRemoteStacks(t *testing.T) {
	long := t0.Add(-time.Minute)
	snap := fakeSnap(map[procid.ID]procid.Status{pR: procid.Alive, pS: procid.Alive},
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pS, 1), long)}, waiters: []lockstate.Waiter{wantW(g(pS, 2), long)}})
	snap.Locks[0].Lost = []lockstate.Loss{{Holder: wr(g(pR, 5), long)}}
	snap.Processes = append(snap.Processes, lockstate.Process{ID: pR, Status: procid.Alive})
	probes := &fakeProbes{text: map[procid.ID]*stackdump.Snapshot{
		pR: {Goroutines: []stackdump.Goroutine{{ID: 5, State: "IO wait", Frames: frames("main.write")}}},
		pS: {Goroutines: []stackdump.Goroutine{{ID: 1, State: "select", Frames: frames("main.hold")},
			{ID: 2, State: "select", Frames: frames("main.send")}}},
	}}
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: []*lockstate.Snapshot{snap}}}, Host: &fakeHost{}, Stacks: probes, Remote: true}
	r, err := Diagnose(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := stackRows(r)
	slices.Sort(got)
	want := []string{"db2/100 holder q dictionary 1", "db2/100 holder q probe-text 1", "db3/400 holder q dictionary 1", "db3/400 holder q probe-text 1", "db3/400 waiter q probe-text 1"}
	if !slices.Equal(got, want) {
		t.Errorf("stacks\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var doing []string
	for _, f := range r.Findings {
		doing = append(doing, string(f.Kind)+": "+f.Doing)
	}
	if want := []string{"lost-lock: IO wait in runtime.gopark < main.write", "stuck-holder: select in runtime.gopark < main.hold"}; !slices.Equal(doing, want) {
		t.Errorf("findings doing %q; want %q", doing, want)
	}
	if len(r.Notes) != 0 {
		t.Errorf("notes %q; want none", r.Notes)
	}
}

// TestLostLockNotProvedDead: a holder that lost its lock and whose lease
// expired (dead or cut off from the store, not proved dead) is a lost-lock
// finding, said as possible, beside the new holder: two may be inside.
func TestLostLockNotProvedDead(t *testing.T) {
	snap := fakeSnap(map[procid.ID]procid.Status{pR: procid.Expired, pS: procid.Alive},
		fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pS, 1), t0)}})
	snap.Locks[0].Lost = []lockstate.Loss{{Holder: wr(g(pR, 5), t0), Says: "its lease 1f expired: dead or cut off"}}
	snap.Processes = append(snap.Processes, lockstate.Process{ID: pR, Status: procid.Expired})
	r, err := diagnoseFake(&fakeHost{}, nil, snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Kind != LostLock {
		t.Fatalf("findings %+v; want one lost-lock", r.Findings)
	}
	f := r.Findings[0]
	if f.Holder.Alive || !strings.Contains(f.Summary, "may still be running (it is not proved dead)") || !strings.Contains(f.Summary, "g1 holds it now") {
		t.Errorf("lost-lock %+v: %q; want the old holder, not alive, maybe still running, beside the new holder", f.Holder, f.Summary)
	}
}
