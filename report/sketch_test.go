package report

import (
	"context"
	"testing"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// sketchSource is a fakeSource that offers sketches too: a sketch is
// sketches[i] at the i-th Sketch, a full read the fakeSource's next.
type sketchSource struct {
	fakeSource
	sketches []*lockstate.Snapshot
	sketched int
}

func (s *sketchSource) Sketch(ctx context.Context) (*lockstate.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.sketches[min(s.sketched, len(s.sketches)-1)]
	s.sketched++
	return snap, nil
}

// TestDiagnoseSketchFirst: with a source that sketches, the findings are
// read from a sketch first and confirmed by a full read, and the report's
// locks are always the full read's (a sketch leaves out the locks nobody
// waits for); a finding the sketch lacks costs one more full read, and a
// sketch with nothing still gets its full read.
func TestDiagnoseSketchFirst(t *testing.T) {
	// q: a dead holder's (pA's), awaited; idle: a live one's, not awaited.
	held := fakeLock{name: "q", holders: []lockstate.Holder{wr(g(pA, 1), t0)}, waiters: []lockstate.Waiter{wantW(g(pC, 3), t0)}}
	idle := fakeLock{name: "idle", holders: []lockstate.Holder{wr(g(pB, 2), t0)}}
	tests := []struct {
		name            string
		sketch          *lockstate.Snapshot
		full            []*lockstate.Snapshot
		findings        int
		locks           int
		sketches, reads int
	}{
		{"a finding in the sketch, confirmed by the full read", fakeSnap(nil, held), []*lockstate.Snapshot{fakeSnap(nil, held, idle)}, 1, 2, 1, 1},
		{"a finding gone by the full read", fakeSnap(nil, held), []*lockstate.Snapshot{fakeSnap(nil, idle)}, 0, 1, 1, 1},
		{"nothing awaited: the full read for the report", fakeSnap(nil), []*lockstate.Snapshot{fakeSnap(nil, idle)}, 0, 1, 1, 1},
		{"a finding the sketch lacks: confirmed by a second full read", fakeSnap(nil), []*lockstate.Snapshot{fakeSnap(nil, held, idle)}, 1, 2, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &sketchSource{fakeSource: fakeSource{snaps: tt.full}, sketches: []*lockstate.Snapshot{tt.sketch}}
			r, err := Diagnose(t.Context(), Sources{Locks: []lockstate.Source{src}, Host: &fakeHost{status: map[procid.ID]procid.Status{pA: procid.Gone}}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Findings) != tt.findings || len(r.Locks) != tt.locks || src.sketched != tt.sketches || src.n != tt.reads {
				t.Errorf("%d findings %v, %d locks, after %d sketches and %d full reads; want %d findings, %d locks (the full read's), after %d and %d",
					len(r.Findings), summaries(r.Findings), len(r.Locks), src.sketched, src.n, tt.findings, tt.locks, tt.sketches, tt.reads)
			}
		})
	}
}
