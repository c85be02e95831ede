package lockreg

import "github.com/lockwatch/lockwatch/internal/rt/arena"

// snapshot reads the registry's run, with the default ReadOptions, through
// the registry's own mapping and handle of the run directory (stacks until
// Close).
func (r *Registry) snapshot() (*arena.Snapshot, error) {
	if !r.enter() {
		return nil, ErrClosed
	}
	defer r.leave()
	return r.a.Snapshot(r.rd, arena.ReadOptions{})
}
