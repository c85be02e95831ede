package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/source/filelocksrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/report/gostacks"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// lookInterval is how often attach looks at the file locks while it tells
// a stuck holder from a slow one.
const lookInterval = 500 * time.Millisecond

// attachFileLocks is attach of a process in no lockwatch run that holds or
// waits for a kernel file lock (flock, POSIX or OFD), in any language: the
// report of its knot of file locks. It handles arg (ok) only then; any
// other argument is left to the run's report.
//
// The kernel keeps no times for file locks, so when a holder that waits
// for nothing has waiters, attach keeps looking, up to --stuck-after, to
// tell a stuck holder (seen holding all that time, its waiters asleep) from
// a slow one; it says so on stderr.
func (a *app) attachFileLocks(ctx context.Context, arg string) (ok bool, err error) {
	pid, err := strconv.Atoi(arg)
	if err != nil || pid <= 0 {
		return false, nil
	}
	if _, err := os.Lstat(arg); err == nil {
		return false, nil // a directory named by digits
	}
	if notInFileLock(pid) {
		return false, nil // its /proc files prove it: no need of the lock table (filelockfree.go)
	}
	if _, err := resolve(arg); err == nil {
		return false, nil // a process of a run: the run's report
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		return false, nil // resolve says why
	}
	src := filelocksrc.New(pid)
	involved, err := src.Involved(ctx)
	if err != nil {
		return true, usagef("pid %d (%s) is not running a probe, and the kernel's file locks cannot be read: %v; file locks need procfs mounted at /proc", pid, st.Comm, err)
	}
	if !involved {
		return false, nil // no file lock: resolve says why there is no report
	}
	a.opts.First = st.Identity()
	defer fewerCollections()()
	sources := report.Sources{Locks: []lockstate.Source{src}, Host: liveness.System{}, Stacks: filelocksrc.Threads{}}
	r, err := report.Diagnose(ctx, sources, a.opts)
	if err != nil {
		return true, usagef("cannot read the file locks of pid %d: %v", pid, err)
	}
	if w := waitedOn(r); w != "" && !r.Deadlock() {
		stuckAfter := a.opts.StuckAfter
		if stuckAfter <= 0 {
			stuckAfter = 10 * time.Second
		}
		fmt.Fprintf(a.stderr, "lockwatch: %s; looking for up to %s (--stuck-after) to tell a stuck holder from a slow one\n", reportcmd.Escape(w), stuckAfter)
		first := time.Now()
		for time.Since(first) < stuckAfter && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(min(lookInterval, stuckAfter-time.Since(first))):
			}
			snap, err := src.Read(ctx)
			if err != nil || !stillWaiting(snap) {
				break
			}
		}
		if ctx.Err() == nil {
			if r2, err := report.Diagnose(ctx, sources, a.opts); err == nil {
				r = r2
			}
		}
	}
	if ctx.Err() == nil {
		fileLockGoroutines(ctx, r)
	}
	if err := a.printFit(a.stdout, r, 0); err != nil {
		return true, err
	}
	return true, exitCode(verdict(r))
}

// fileLockGoroutines adds to a report on file locks the goroutines of the
// Go processes in its findings, read from their memory: for each waiter
// (and each process of a cycle) the goroutine blocked in flock(2) or
// fcntl(2), for each stuck holder its blocked goroutines, whose summary
// joins what the finding says it is doing.
func fileLockGoroutines(ctx context.Context, r *report.Report) {
	g := gostacks.New()
	defer g.Close()
	fileKind := func(k string) bool {
		return k == filelocksrc.KindFlock || k == filelocksrc.KindPOSIX || k == filelocksrc.KindOFD
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if !fileKind(f.LockKind) {
			continue
		}
		for _, w := range f.Waiters {
			if w.Alive && w.Goroutine == lockstate.WholeProcess && w.Host == "" {
				g.Add(ctx, r, gostacks.Party{PID: w.PID, Start: w.Start, Lock: f.Lock, Role: "waiter"}, gostacks.InFileLock)
			}
		}
		for _, st := range f.Cycle {
			if st.Alive && st.Goroutine == lockstate.WholeProcess && st.Host == "" {
				g.Add(ctx, r, gostacks.Party{PID: st.PID, Start: st.Start, Lock: st.WaitsFor, Role: "waiter"}, gostacks.InFileLock)
			}
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		h := f.Holder
		if !fileKind(f.LockKind) || f.Kind != report.StuckHolder || h == nil || !h.Alive || h.Goroutine != lockstate.WholeProcess || h.Host != "" {
			continue
		}
		if g.Add(ctx, r, gostacks.Party{PID: h.PID, Start: h.Start, Lock: f.Lock, Role: "holder"}, gostacks.Blocked) {
			if s := g.Summary(h.PID); s != "" {
				f.Doing = strings.TrimPrefix(f.Doing+"; Go: "+s, "; ")
			}
		}
	}
	g.Notes(r)
}

// waitedOn says, for a report with no deadlock, which live holder of a
// file lock that waits for no lock has live waiters: "pid 42 holds
// "/tmp/x" that pid 43 waits for"; "" when none has.
func waitedOn(r *report.Report) string {
	waiting := map[int]bool{}
	for _, w := range r.Waiters {
		waiting[w.PID] = true
	}
	for _, w := range r.Waiters {
		for _, l := range r.Locks {
			if l.Name != w.Lock || l.Kind != w.LockKind || l.Holder == nil || !l.Holder.Alive || waiting[l.Holder.PID] || !w.Alive {
				continue
			}
			return fmt.Sprintf("pid %d holds %q, which pid %d waits for", l.Holder.PID, l.Name, w.PID)
		}
	}
	return ""
}

// stillWaiting reports whether a snapshot still has a lock with a holder
// and waiters: while it has, a stuck holder may yet be told.
func stillWaiting(s *lockstate.Snapshot) bool {
	for _, l := range s.Locks {
		if len(l.Holders) > 0 && len(l.Waiters) > 0 {
			return true
		}
	}
	return false
}
