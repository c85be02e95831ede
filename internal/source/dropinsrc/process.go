package dropinsrc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/dropinmem"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// A Process reads the drop-in mutexes of one process from its arena
// (dropinmem.View), asking it nothing: the exact holder, reader and waiter
// records of a program that only changed its import line, attached by pid
// with no probe. It is safe for concurrent use.
type Process struct {
	ID procid.ID
	// Dir is the process's run directory, where its arena is a file; ""
	// for its memfd.
	Dir string
	// Notes are added to every snapshot (what else was or was not read of
	// the process).
	Notes []string

	mu    sync.Mutex
	addrs map[uint64]bool
}

// Read reads the process's held and awaited drop-in mutexes and, with a
// Dir, the lock-order edges its probe last wrote there (the orders file,
// which a probe that stands down writes as it does).
func (p *Process) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	out := &lockstate.Snapshot{Run: fmt.Sprintf("pid %d", p.ID.PID), Taken: time.Now(), Processes: []lockstate.Process{{ID: p.ID}},
		Notes: slices.Clone(p.Notes)}
	res := &stacks{byID: map[key][]stackdump.Frame{}}
	out.Stacks = res
	if p.Dir != "" {
		switch orders, err := readOrdersFile(p.Dir, p.ID); {
		case err != nil:
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's drop-in lock-order edges were not read: %v", p.ID.PID, err))
		case orders != nil:
			ConvertOrders(out, res, p.ID, orders, false)
		}
	}
	v, err := dropinmem.View(p.ID, p.Dir)
	if err != nil {
		// Its arena went (an exec), or never could be read: said, and
		// its other locks are still reported.
		prefix := fmt.Sprintf("pid %d's drop-in mutexes could not be read: ", p.ID.PID)
		if !slices.ContainsFunc(out.Notes, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			out.Notes = append(out.Notes, prefix+err.Error())
		}
		p.mu.Lock()
		p.addrs = nil
		p.mu.Unlock()
		return out, nil
	}
	out.Taken = v.Taken
	Convert(out, res, p.ID, v)
	addrs := make(map[uint64]bool, len(v.Mutexes))
	for _, m := range v.Mutexes {
		addrs[m.ID] = true
	}
	p.mu.Lock()
	p.addrs = addrs
	p.mu.Unlock()
	return out, nil
}

// Has reports whether the last Read listed the drop-in mutex at addr (a
// mutex's id is its address, which is its sync.Mutex's or
// sync.RWMutex's: the memory reader sees its waiters there).
func (p *Process) Has(addr uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[addr]
}
