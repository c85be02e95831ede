package cli

import (
	"context"
	"errors"
	"time"

	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/lockstate"
)

// runArena is the lockreg source of a run, which may have no lockreg
// arena: a run whose processes only changed their sync import line (no
// probe, no lockreg) has their drop-in arenas only, which dropinsrc reads.
// Such a run reads as one with no lockreg lock; a directory with neither
// is still no run (lockreg.ErrNotRun).
type runArena struct {
	lockstate.Source
	dir string
}

func (s runArena) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	snap, err := s.Source.Read(ctx)
	if errors.Is(err, lockreg.ErrNotRun) && dropinsrc.HasArenas(s.dir) {
		return &lockstate.Snapshot{Run: s.dir, Taken: time.Now()}, nil
	}
	return snap, err
}
