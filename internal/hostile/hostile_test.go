package hostile

import (
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/lockreg"
)

// TestWriteMatchesTheFormat builds each case at a small scale and reads it
// back with lockreg: the generator writes the format lockreg reads.
func TestWriteMatchesTheFormat(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want lockreg.Counts
	}{
		{"events", Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 2, UsedLocks: 4, UsedEvents: 200},
			lockreg.Counts{Processes: 2, Running: 2, Locks: 4, Events: 64}},
		{"waiters", Spec{Procs: 8, Locks: 8, Waiters: 100, Events: 64, UsedProcs: 1, UsedLocks: 1, UsedWaiters: 100},
			lockreg.Counts{Processes: 1, Running: 1, Locks: 1, Held: 1, Waiters: 100}},
		{"procs", Spec{Procs: 100, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 100, UsedLocks: 1},
			lockreg.Counts{Processes: 100, Running: 100, Locks: 1}},
		{"locks", Spec{Procs: 8, Locks: 100, Waiters: 8, Events: 64, UsedProcs: 1, UsedLocks: 100, OwnerDied: true},
			lockreg.Counts{Processes: 1, Running: 1, Locks: 100, Held: 100}},
		{"dicts", Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 2, UsedLocks: 2, OwnerDied: true,
			Dicts: 2, DictSize: 4096, DictLine: 1000, InfoFiles: 2, InfoSize: 1000},
			lockreg.Counts{Processes: 2, Running: 2, Locks: 2, Held: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := Write(dir, tt.spec); err != nil {
				t.Fatal(err)
			}
			s, err := lockreg.ReadSnapshot(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.Counts != tt.want {
				t.Errorf("counts: got %+v; want %+v", s.Counts, tt.want)
			}
			if tt.spec.UsedEvents > 0 {
				if len(s.Events) != int(tt.spec.Events) || s.Events[0].Seq != tt.spec.UsedEvents-uint64(tt.spec.Events) {
					t.Errorf("events: got %d from seq %d; want the last %d", len(s.Events), s.Events[0].Seq, tt.spec.Events)
				}
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

func TestGzipBomb(t *testing.T) {
	b := GzipBomb(128 << 20)
	if len(b) > 1<<20 {
		t.Errorf("a bomb of 128 MiB takes %d bytes; want far less", len(b))
	}
}
