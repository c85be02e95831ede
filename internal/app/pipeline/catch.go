package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
)

// catchTimeout bounds how long --hang tries to catch a worker holding the
// write lock: long after the workers' feeders would have drained.
const catchTimeout = 30 * time.Second

// errNotCaught means no worker was seen holding the lock in catchTimeout:
// their feeders had drained.
var errNotCaught = errors.New("no worker was caught holding the write lock")

// catchHolder makes the seed's bad luck certain, by observation rather than
// by a delay: it freezes every worker (SIGSTOP), reads the registry, and
// returns with the workers still frozen once one of them holds the lock
// named lock; otherwise it lets them run again (SIGCONT) and tries again. A
// frozen worker cannot release the lock, so the SIGKILL of Terminate that
// follows kills it while it holds it, as leaving the pool killed the Python
// worker whose feeder was writing.
func (p *Pool) catchHolder(ctx context.Context, reg *lockreg.Registry, lock string) (pid int, err error) {
	deadline := time.Now().Add(catchTimeout)
	pids := p.pids()
	for {
		p.signal(syscall.SIGSTOP)
		if err := waitStopped(ctx, pids); err != nil {
			p.signal(syscall.SIGCONT)
			return 0, err
		}
		snap, err := arena.ReadSnapshot(reg.Dir())
		if err != nil {
			p.signal(syscall.SIGCONT)
			return 0, err
		}
		for _, l := range snap.Locks {
			if l.Name == lock && slices.Contains(pids, l.HolderPID) {
				return l.HolderPID, nil
			}
		}
		p.signal(syscall.SIGCONT)
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%w in %v", errNotCaught, catchTimeout)
		}
	}
}

// stopPoll is how often waitStopped looks at /proc: SIGSTOP takes effect in
// microseconds.
const stopPoll = 50 * time.Microsecond

// waitStopped waits until each process in pids is stopped, or gone.
func waitStopped(ctx context.Context, pids []int) error {
	for _, pid := range pids {
		for {
			st, err := proc.ReadStat(pid)
			if errors.Is(err, proc.ErrNoProcess) {
				break
			}
			if err != nil {
				return err
			}
			if st.State == 'T' || st.State == 't' || st.State == 'Z' || st.State == 'X' {
				break
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(stopPoll)
		}
	}
	return nil
}
