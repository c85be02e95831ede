package lockreg

import "github.com/lockwatch/lockwatch/internal/rt/record"

// coarseNow is the time of uncontended acquires and releases: the process's
// coarse clock (record.Coarse, which the drop-in mutexes share), one load
// instead of a 20-25 ns vDSO call, at most about a millisecond old
// (docs/registry-format.md). Decisions that depend on time (the slow path's
// deadlines, the stuck hook) and the slow path's records use nanotime, exact.
// Read it before procPin: when the clock is stale it takes a mutex, which
// may block, and blocking while pinned is a fatal error of the runtime.
func coarseNow() int64 { return record.Coarse() }
