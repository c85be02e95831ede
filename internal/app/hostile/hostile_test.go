package hostile

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// TestWriteMatchesTheFormat builds each case at a small scale and reads it
// back with lockreg: the generator writes the format lockreg reads.
func TestWriteMatchesTheFormat(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want arena.Counts
	}{
		// Rings of 8 slots: 4 holder and 4 waiter events kept of each
		// lock's 200 (wrapped), and of a lock's 5 (3 holder, 2 waiter).
		{"events", Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 2, UsedLocks: 4, LockEvents: 200},
			arena.Counts{Processes: 2, Running: 2, Locks: 4, Events: 32}},
		{"events-partial", Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 2, UsedLocks: 3, LockEvents: 5},
			arena.Counts{Processes: 2, Running: 2, Locks: 3, Events: 15}},
		{"waiters", Spec{Procs: 8, Locks: 8, Waiters: 100, Events: 64, UsedProcs: 1, UsedLocks: 1, UsedWaiters: 100},
			arena.Counts{Processes: 1, Running: 1, Locks: 1, Held: 1, Waiters: 100}},
		{"procs", Spec{Procs: 100, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 100, UsedLocks: 1},
			arena.Counts{Processes: 100, Running: 100, Locks: 1}},
		{"locks", Spec{Procs: 8, Locks: 100, Waiters: 8, Events: 64, UsedProcs: 1, UsedLocks: 100, OwnerDied: true},
			arena.Counts{Processes: 1, Running: 1, Locks: 100, Held: 100}},
		{"dicts", Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 2, UsedLocks: 2, OwnerDied: true,
			Dicts: 2, DictSize: 4096, DictLine: 1000, InfoFiles: 2, InfoSize: 1000},
			arena.Counts{Processes: 2, Running: 2, Locks: 2, Held: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := Write(dir, tt.spec); err != nil {
				t.Fatal(err)
			}
			s, err := arena.ReadSnapshot(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.Counts != tt.want {
				t.Errorf("counts: got %+v; want %+v", s.Counts, tt.want)
			}
			if tt.spec.LockEvents > 0 {
				checkEvents(t, tt.spec, s)
			}
			for i := 0; i < tt.spec.Dicts; i++ {
				l := s.Locks[i]
				if l.Holder == nil {
					t.Fatalf("lock %d: no holder record", i)
				}
				fr, ok := s.Stack(l.Holder.Identity(), l.Holder.Stack)
				if !ok || len(fr) != 1 || len(fr[0].Func) < 900 {
					t.Errorf("lock %d: stack %v, %v; want the long frame", i, ok, len(fr))
				}
			}
			for i := 0; i < tt.spec.InfoFiles; i++ {
				if s.Processes[i].Info == nil || s.Processes[i].Info.Role != "hostile" {
					t.Errorf("process %d: info %+v; want the planted one", i, s.Processes[i].Info)
				}
			}
		})
	}
}

// checkEvents checks that each lock's events came back in the order the
// generator wrote them: holder and waiter events alternating, each half its
// last ring/2 tickets, and that the rings' totals add up.
func checkEvents(t *testing.T, spec Spec, s *arena.Snapshot) {
	t.Helper()
	if len(s.Events) != spec.HeldEvents() || s.Counts.Events != spec.HeldEvents() {
		t.Errorf("events: got %d (count %d); want %d", len(s.Events), s.Counts.Events, spec.HeldEvents())
	}
	if want := uint64(spec.UsedLocks) * spec.LockEvents; s.EventsTotal != want {
		t.Errorf("events ever recorded: got %d; want %d", s.EventsTotal, want)
	}
	h, w := lockEvents(spec.LockEvents)
	half := uint64(spec.RingSlots() / 2)
	perLock := make(map[int][]arena.EventKind)
	for _, e := range s.Events {
		perLock[e.Lock] = append(perLock[e.Lock], e.Kind)
	}
	for i := 0; i < spec.UsedLocks; i++ {
		var want []arena.EventKind
		// Holder ticket j is followed by waiter ticket j.
		for j := uint64(0); j < max(h, w); j++ {
			if j < h && j+half >= h {
				want = append(want, arena.EventKind(1+j%2))
			}
			if j < w && j+half >= w {
				want = append(want, arena.EventWait)
			}
		}
		if got := perLock[i]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("lock %d: events %v; want %v", i, got, want)
		}
	}
}

func TestGzipBomb(t *testing.T) {
	b := GzipBomb(128 << 20)
	if len(b) > 1<<20 {
		t.Errorf("a bomb of 128 MiB takes %d bytes; want far less", len(b))
	}
}

// The amplifying cases are what they claim: a small gzip of many samples,
// a traceback of many goroutines.
func TestAmplifyingCases(t *testing.T) {
	p := AmplifyingProfile(16<<20 - 1024)
	if len(p) > 64<<10 {
		t.Errorf("the amplifying profile takes %d bytes of gzip; want some 16 KB", len(p))
	}
	tb := TinyGoroutines(1 << 20)
	if n := bytes.Count(tb, []byte("goroutine ")); n < 20000 {
		t.Errorf("1 MiB of tiny goroutines holds %d; want more than 20,000", n)
	}
	if a, b := RandomBytes(64, 1), RandomBytes(64, 1); !bytes.Equal(a, b) || bytes.Equal(a, RandomBytes(64, 2)) {
		t.Errorf("RandomBytes is not a function of its seed")
	}
}
