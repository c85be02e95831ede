package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/stackdump"
)

// target is what a PID|RUNDIR argument names: a run, and a process of it
// when a pid was given.
type target struct {
	dir string
	id  proc.Identity // zero for a run directory
}

// runDirs lists this user's run directories, newest first: under the
// default root and under the private fallbacks chosen when the default was
// taken by another user (arena.Roots).
func runDirs() []string { return arena.AllRunDirs() }

// resolve finds the run that arg names: a run directory, or a pid whose
// environment names its run (LOCKWATCH_DIR), or whose process file a run
// under the default root holds (a probe that made its own run directory).
func resolve(arg string) (target, error) {
	pid, err := strconv.Atoi(arg)
	if err != nil {
		return resolveDir(arg)
	}
	if _, err := os.Lstat(arg); err == nil {
		return resolveDir(arg) // a directory named by digits
	}
	if pid <= 0 {
		return target{}, usagef("%q is not a pid: want a positive number or a run directory", arg)
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		if errors.Is(err, proc.ErrNoProcess) {
			// A dead process of a run: the holder a finding names.
			if t, ok := runOfDead(pid); ok {
				return t, nil
			}
			return target{}, usagef("no process has pid %d, and no run under the default root lists it; 'lockwatch ps --all' lists the runs", pid)
		}
		return target{}, usagef("cannot read pid %d: %v", pid, err)
	}
	if uid, err := liveness.Owner(pid); err == nil && uid != os.Getuid() {
		return target{}, usagef("pid %d belongs to uid %d, not to you (uid %d); run lockwatch as that user", pid, uid, os.Getuid())
	}
	id := st.Identity()
	dir, ok, err := liveness.Environ(pid, probe.EnvDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		if errors.Is(err, fs.ErrPermission) {
			return target{}, usagef("cannot read the environment of pid %d (permission denied: it is protected or another user's); run lockwatch as the user that runs it, or give its run directory ('lockwatch ps')", pid)
		}
		return target{}, usagef("cannot read the environment of pid %d: %v; give its run directory instead ('lockwatch ps')", pid, err)
	}
	if ok && dir != "" {
		if !filepath.IsAbs(dir) {
			// Relative to the process's working directory (which is
			// where its probe resolved it, unless it changed directory).
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
				dir = filepath.Join(cwd, dir)
			}
		}
		return probedTarget(dir, id, st.Comm)
	}
	for _, d := range runDirs() {
		info, _, _ := arena.ProcessFiles(d, id)
		if _, err := os.Stat(info); err == nil {
			return probedTarget(d, id, st.Comm)
		}
	}
	if t, ok := runOfDead(pid); ok {
		return t, nil // the pid is now another process's
	}
	where := "your lockwatch roots"
	if roots := arena.Roots(); len(roots) > 0 {
		where = strings.Join(roots, ", ")
	}
	return target{}, &noProbeError{id: id, comm: st.Comm, err: usagef("pid %d (%s) is not running a probe (no %s in its environment, and no run under %s lists it); start it with 'lockwatch run' or import github.com/lockwatch/lockwatch/probe",
		pid, st.Comm, probe.EnvDir, where)}
}

// probedTarget is the live process id of the run in dir, unless its probe
// stands down (probeclient.DownFile): then, with no socket to ask, it is read
// from its memory, as a process that runs no probe is.
func probedTarget(dir string, id proc.Identity, comm string) (target, error) {
	_, _, base := arena.ProcessFiles(dir, id)
	if fi, err := os.Lstat(filepath.Join(dir, probeclient.DownFile(base))); err == nil && fi.Mode().IsRegular() {
		return target{}, &noProbeError{id: id, comm: comm, dir: dir, down: true,
			err: usagef("pid %d's probe stands down, and answers on no socket until it serves again", id.PID)}
	}
	return target{dir: dir, id: id}, nil
}

// noProbeError is resolve's error for a live process that runs no probe:
// attach, watch and stacks then read it from its memory (memory.go).
type noProbeError struct {
	id   proc.Identity
	comm string
	err  error
	// down: it runs a probe, in the run in dir, which stands down.
	down bool
	dir  string
}

func (e *noProbeError) Error() string { return e.err.Error() }
func (e *noProbeError) Unwrap() error { return e.err }

// runOfDead finds the newest run under the default root whose process
// table lists pid as a process that is no longer alive: a dead holder's pid,
// as a finding names it.
func runOfDead(pid int) (target, bool) {
	for _, d := range runDirs() {
		procs, err := arena.ReadProcesses(d)
		if err != nil {
			continue
		}
		for _, p := range procs {
			if p.PID != pid {
				continue
			}
			if st, _ := (liveness.System{}).Check(p.Identity()); st.Dead() {
				return target{dir: d}, true
			}
		}
	}
	return target{}, false
}

func resolveDir(dir string) (target, error) {
	if _, err := os.Lstat(dir); err != nil && !strings.ContainsRune(dir, '/') {
		// A run's name, as ps prints it, in any of this user's roots.
		for _, root := range arena.Roots() {
			if _, err := os.Lstat(filepath.Join(root, dir)); err == nil {
				return target{dir: filepath.Join(root, dir)}, nil
			}
		}
	}
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return target{}, usagef("%s does not exist: want a pid, a run name or a run directory; 'lockwatch ps' lists the runs", dir)
		}
		return target{}, usagef("%v", err)
	}
	return target{dir: dir}, nil
}

// readError turns an error reading a run into a one-line usage error that
// says what to do.
func readError(dir string, err error) error {
	var ae *arena.ArenaError
	if errors.Is(err, lockreg.ErrNotRun) || errors.Is(err, fs.ErrNotExist) {
		// Said once, not as the arena error's kind, detail and hint.
		why := "no arena file"
		if errors.As(err, &ae) {
			why = ae.Detail
		}
		return usagef("%s is not a lockwatch run (%s): give a pid, a run name or a run directory; 'lockwatch ps' lists the runs", dir, why)
	}
	if errors.As(err, &ae) {
		msg := fmt.Sprintf("%s: %v: %s", ae.Path, ae.Kind, ae.Detail)
		if ae.Hint != "" {
			msg += "; " + ae.Hint
		}
		return usagef("%s", msg)
	}
	return usagef("cannot read the run %s: %v", dir, err)
}

// probes fetches live stacks through the probes' control sockets.
type probes struct{ dir string }

func (p probes) client(id proc.Identity, ctx context.Context) *probeclient.Client {
	c := &probeclient.Client{Path: probeclient.SocketPath(p.dir, id)}
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(d)
	}
	return c
}

func (p probes) Profile(ctx context.Context, id proc.Identity) (*stackdump.Profile, error) {
	d, err := p.client(id, ctx).Goroutines(ctx, false)
	if err != nil {
		return nil, err
	}
	return parseDump(d)
}

func (p probes) Text(ctx context.Context, id proc.Identity) (*stackdump.Snapshot, error) {
	d, err := p.client(id, ctx).Goroutines(ctx, true)
	if err != nil {
		return nil, err
	}
	// A share of the parser's bounds: a report reads up to
	// --probe-concurrency dumps at once.
	s, err := stackdump.ParseWithin(bytes.NewReader(d.Data), probeTextLimits)
	if s != nil && len(s.Goroutines) > 0 {
		return s, nil // lines it could not read do not spoil the rest
	}
	return nil, err
}

// Goroutines reads the goroutines named from a short execution trace of
// the process: its world stops for moments only, where a text dump stops
// it for the whole dump. Only the goroutines named are kept.
func (p probes) Goroutines(ctx context.Context, id proc.Identity, goroutines []int64) (*stackdump.Snapshot, error) {
	d, err := p.client(id, ctx).GoroutineTrace(ctx)
	if err != nil {
		return nil, err
	}
	want := make(map[int64]bool, len(goroutines))
	for _, g := range goroutines {
		want[g] = true
	}
	s, err := stackdump.ParseTraceData(d.Data, func(g int64) bool { return want[g] })
	if err != nil && len(s.Goroutines) == 0 {
		return nil, err
	}
	return s, nil // a damaged end does not spoil what was read before it
}

func parseDump(d *probeclient.Dump) (*stackdump.Profile, error) {
	if d.Format != probeclient.FormatProto {
		return nil, fmt.Errorf("probe answered a %q dump, want %q", d.Format, probeclient.FormatProto)
	}
	return stackdump.ParseProfile(d.Data)
}

// probeTextLimits bound what is kept of one probe's text dump (at most
// probeclient.MaxTextDump, some 45,000 ordinary goroutines).
var probeTextLimits = stackdump.Limits{Goroutines: 1 << 16, Retained: 16 << 20}

func procID(pid int, start uint64) proc.Identity { return proc.Identity{PID: pid, Start: start} }
