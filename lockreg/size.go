package lockreg

import "github.com/lockwatch/lockwatch/internal/rt/arena"

// Size returns the arena's size in bytes for the given capacities, as Open
// would create it: each lock gets an event ring of maxEvents/maxLocks slots
// (rounded down to a power of two, at least 4 and at most 1024).
// Capacities past the limits Open accepts give -1.
func Size(maxProcs, maxLocks, maxWaiters, maxEvents int) int64 {
	o := Options{MaxProcs: maxProcs, MaxLocks: maxLocks, MaxWaiters: maxWaiters, MaxEvents: maxEvents}
	o.setDefaults()
	if o.check() != nil {
		return -1
	}
	g := arena.Layout(uint32(o.MaxProcs), uint32(o.MaxLocks), uint32(o.MaxWaiters), arena.RingSlotsFor(o.MaxEvents, o.MaxLocks))
	return int64(g.WithEdges(uint32(o.MaxEdges)).Total)
}
