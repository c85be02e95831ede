package lockreg_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
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
// (internal/app/hostile) and checks that the reading allocates at most
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
			var s *arena.Snapshot
			var err error
			var notes []string
			n := allocated(func() {
				s, err = arena.ReadSnapshot(dir)
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
			want := arena.Counts{Processes: spec.UsedProcs, Running: spec.UsedProcs, Locks: spec.UsedLocks,
				Waiters: spec.UsedWaiters, Events: spec.HeldEvents()}
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

// TestReadOptionsEvents: ReadOptions.Events bounds the events read from all
// the locks' rings together, keeping the newest (by time, ties by lock
// index), and the note says how many the rings hold and how to ask for more.
func TestReadOptionsEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	// 128 locks with full rings of 1,024 (512 holder events kept of 515
	// and 512 waiter events of 514 each): 131,072 events held. The newest
	// is each lock's holder event 514 (an acquire), the last of lock 127.
	spec := hostile.Spec{Procs: 8, Locks: 128, Waiters: 8, Events: 1 << 17, UsedProcs: 1, UsedLocks: 128, LockEvents: 1029}
	if err := hostile.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	if spec.HeldEvents() != 1<<17 {
		t.Fatalf("the run holds %d events; the test wants 131,072", spec.HeldEvents())
	}
	for _, tt := range []struct {
		events, want int
		note         string
	}{
		{0, arena.DefaultReadEvents, "showing the last 65,536 of 131,072 events; use more"},
		{100, 100, "showing the last 100 of 131,072 events; use more"},
		{1 << 20, 1 << 17, ""},
	} {
		s, err := arena.ReadSnapshotWith(dir, arena.ReadOptions{Events: tt.events, MoreEvents: "use more"})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Events) != tt.want {
			t.Fatalf("Events=%d: got %d events; want %d", tt.events, len(s.Events), tt.want)
		}
		if last := s.Events[len(s.Events)-1]; last.Lock != 127 || last.Kind != arena.EventAcquire || last.Seq != uint64(tt.want-1) {
			t.Errorf("Events=%d: the last event is %v of lock %d (seq %d); want lock 127's last acquire", tt.events, last.Kind, last.Lock, last.Seq)
		}
		if tt.events == 100 {
			// The newest 100: holder event 514 of locks 28 to 127.
			for k, e := range s.Events {
				if e.Lock != 28+k || e.Kind != arena.EventAcquire {
					t.Fatalf("Events=100: event %d is %v of lock %d; want the acquire of lock %d", k, e.Kind, e.Lock, 28+k)
				}
			}
		}
		for k := 1; k < len(s.Events); k++ {
			if s.Events[k].Time.Before(s.Events[k-1].Time) {
				t.Fatalf("Events=%d: event %d is older than the one before it", tt.events, k)
			}
		}
		if got := strings.Join(s.Notes(), "|"); got != tt.note {
			t.Errorf("Events=%d: notes %q; want %q", tt.events, got, tt.note)
		}
	}
}

// TestInfoFilesAmplifying: sixteen info files within the size limit made
// of empty arguments (16 bytes of string decoded from each 3 bytes) are
// refused before they are decoded, and said; before, reading them
// allocated 467 MiB.
func TestInfoFilesAmplifying(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	spec := hostile.Spec{Procs: 64, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 16, UsedLocks: 1,
		InfoFiles: 16, InfoSize: arena.MaxInfoSize - 16, InfoEmptyArgs: true}
	if err := hostile.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	var s *arena.Snapshot
	var err error
	n := allocated(func() { s, err = arena.ReadSnapshot(dir) })
	if err != nil {
		t.Fatal(err)
	}
	if n > 96<<20 { // the files themselves take 16 MiB; the race detector adds to what is counted
		t.Errorf("reading 16 amplifying info files allocated %d MiB; want at most 96 MiB", n>>20)
	}
	if notes := strings.Join(s.Notes(), "\n"); !strings.Contains(notes, "info files were not read") {
		t.Errorf("notes %q; want the info files said", notes)
	}
}
