package lockreg_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/hostile"
	"github.com/lockwatch/lockwatch/lockreg"
)

// stress is set by `make stress`: the hostile cases at the audit's full
// size (gigabytes of files); otherwise at a size that still passes every
// read limit several times over.
var stress = os.Getenv("LOCKWATCH_STRESS") != ""

// scaled returns the audit case name at the size the test runs.
func scaled(name string) hostile.Spec {
	if stress {
		return hostile.Cases[name]
	}
	return hostile.Small(name)
}

// allocated returns the bytes f allocates on the heap, in all: an upper
// bound of the memory it needs at any moment, whatever the garbage
// collector does meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// readBound is what reading a snapshot of any run may allocate, and looking
// up every stack it names: a snapshot at the default limits is some 10 MiB.
const readBound = 32 << 20

// TestHostileArenasReadBounded reads each of the audit's hostile runs
// (internal/hostile) and checks that the reading allocates at most
// readBound whatever the arena's size, and that the snapshot says what it
// left out. Before the limits, the same reads allocated in proportion to
// the arena (gigabytes at full size).
func TestHostileArenasReadBounded(t *testing.T) {
	wantNote := map[string]string{
		"events":  "showing the last 65,536 of ",
		"waiters": "showing 4,096 of ",
		"procs":   "showing 1,024 of ",
		"locks":   "showing 4,096 of ",
		"info":    "info files were not read",
		"dicts":   "lines of stack dictionaries were skipped",
	}
	for _, name := range hostile.Names() {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			spec := scaled(name)
			if err := hostile.Write(dir, spec); err != nil {
				t.Fatal(err)
			}
			var s *lockreg.Snapshot
			var err error
			var notes []string
			n := allocated(func() {
				s, err = lockreg.ReadSnapshot(dir)
				if err != nil {
					return
				}
				for _, l := range s.Locks {
					if l.Holder != nil {
						s.Stack(l.Holder.Identity(), l.Holder.Stack)
					}
				}
				for _, w := range s.Waiters {
					s.Stack(w.Identity(), w.Stack)
				}
				notes = s.Notes()
			})
			if err != nil {
				t.Fatal(err)
			}
			want := lockreg.Counts{Processes: spec.UsedProcs, Running: spec.UsedProcs, Locks: spec.UsedLocks,
				Waiters: spec.UsedWaiters, Events: int(min(spec.UsedEvents, uint64(spec.Events)))}
			if spec.OwnerDied {
				want.Held = spec.UsedLocks
			} else if spec.UsedWaiters > 0 {
				want.Held = 1
			}
			if s.Counts != want {
				t.Errorf("counts %+v; want %+v", s.Counts, want)
			}
			if n > readBound {
				t.Errorf("reading allocated %d MiB; want at most %d MiB", n>>20, readBound>>20)
			}
			t.Logf("%s: %.1f MiB allocated; notes %q", name, float64(n)/(1<<20), notes)
			if !strings.Contains(strings.Join(notes, "\n"), wantNote[name]) {
				t.Errorf("notes %q; want one saying %q", notes, wantNote[name])
			}
		})
	}
}

// TestReadOptionsEvents: ReadOptions.Events reads more of the ring, and the
// note says how to ask for more.
func TestReadOptionsEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := hostile.Write(dir, hostile.Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 1 << 17, UsedProcs: 1, UsedLocks: 2, UsedEvents: 1<<17 + 5}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		events, want int
		note         string
	}{
		{0, lockreg.DefaultReadEvents, "showing the last 65,536 of 131,072 events; use more"},
		{100, 100, "showing the last 100 of 131,072 events; use more"},
		{1 << 20, 1 << 17, ""},
	} {
		s, err := lockreg.ReadSnapshotWith(dir, lockreg.ReadOptions{Events: tt.events, MoreEvents: "use more"})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Events) != tt.want || s.Events[len(s.Events)-1].Seq != 1<<17+4 {
			t.Errorf("Events=%d: got %d events ending at %d; want the last %d", tt.events, len(s.Events), s.Events[len(s.Events)-1].Seq, tt.want)
		}
		if got := strings.Join(s.Notes(), "|"); got != tt.note {
			t.Errorf("Events=%d: notes %q; want %q", tt.events, got, tt.note)
		}
	}
}
