package report

import (
	"context"
	"errors"

	"github.com/shirou/gopsutil/v3/process"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Host tells whether processes of this machine live. LocalHost implements
// it from /proc; lockwatch's own, for its runs, proves membership too.
type Host interface {
	// Check proves whether id's process is alive: procid.Alive, a proof of
	// death (Gone, Zombie, Reused), or procid.Unknown when the check failed.
	Check(id procid.ID) (procid.Status, error)
	// Command describes a process that wrote no info file ("" if unknown).
	Command(pid int) string
}

// LocalHost is the Host of this machine from /proc: procid.Check proves
// each process alive or dead by pid and start time, and Command reads its
// command line. It suits a source whose processes belong to no run on this
// machine (a store's sessions, a database's clients). Its zero value is
// ready and safe for concurrent use.
type LocalHost struct{}

// Check is procid.Check.
func (LocalHost) Check(id procid.ID) (procid.Status, error) { return procid.Check(id) }

// Command returns the process's command line, or its name; "" if neither
// can be read.
func (LocalHost) Command(pid int) string {
	p := &process.Process{Pid: int32(pid)}
	if c, err := p.CmdlineWithContext(context.Background()); err == nil && c != "" {
		return c
	}
	if n, err := p.NameWithContext(context.Background()); err == nil {
		return n
	}
	return ""
}

// Stacks fetches live stacks from a process's probe. Calls must return
// when ctx ends.
type Stacks interface {
	// Profile returns the process's goroutine profile (cheap). Goroutines
	// waiting for a lock carry their backend's pprof wait label
	// (lockstate.Snapshot.WaitLabel).
	Profile(ctx context.Context, id procid.ID) (*stackdump.Profile, error)
	// Goroutines returns the goroutines named of the process, with their
	// ids, states and stacks (those it can say: a goroutine running at
	// that moment may be left out), from a source that never stops the
	// process's world for long (an execution trace).
	Goroutines(ctx context.Context, id procid.ID, goroutines []int64) (*stackdump.Snapshot, error)
	// Text returns the process's text dump, with goroutine ids and states;
	// it stops the process's world for the whole dump (tens to hundreds of
	// milliseconds at 10,000 goroutines). Asked only with Options.TextDumps.
	Text(ctx context.Context, id procid.ID) (*stackdump.Snapshot, error)
}

// Sources are where a diagnosis reads from.
type Sources struct {
	// Locks are the backends whose locks are diagnosed together (a
	// lockreg run, the probes' in-process locks, an etcd prefix); at least
	// one. The report's run is the first one's.
	Locks []lockstate.Source
	// Host checks the processes of this machine; required.
	Host Host
	// Stacks asks the probes for live stacks; nil: no live stacks.
	Stacks Stacks
	// Remote says that Stacks reaches the processes of every machine, not
	// only this one's (it asks them through the store that keeps their
	// locks, as etcd's registry answers stack requests), and that it
	// answers with text dumps only: its Profile is never called.
	Remote bool
}

// ErrNoSource is returned by Diagnose when Sources.Locks is empty.
var ErrNoSource = errors.New("report: no lock source to diagnose")

// confirmRounds bounds the extra snapshots read to confirm findings.
const confirmRounds = 3

// Diagnose reads the sources and reports on them. Findings are confirmed
// by a second snapshot (see the package comment). The error is a source's
// own when one cannot be read (lockreg's *ArenaError, an *fs.PathError).
func Diagnose(ctx context.Context, src Sources, opts Options) (*Report, error) {
	if len(src.Locks) == 0 {
		return nil, ErrNoSource
	}
	opts = opts.withDefaults()
	g, err := readSketch(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	fs := g.findings()
	// A sketch is read again in full, for the report, whatever it found.
	for round := 0; round < confirmRounds && (g.sketch || unconfirmed(fs)); round++ {
		g, err = read(ctx, src, opts)
		if err != nil {
			return nil, err
		}
		now := g.findings()
		fs = confirm(fs, now)
		if len(fs) == len(now) {
			break
		}
		if round < confirmRounds-1 {
			fs = now // try to confirm the new ones with the next snapshot
		}
	}
	// Every finding left is confirmed: the loop ends when none is
	// unconfirmed, or right after a confirm, which keeps only confirmed ones.
	return build(ctx, g, fs, src, opts), nil
}

// read reads every source once and checks every process they name.
func read(ctx context.Context, src Sources, opts Options) (*graph, error) {
	return readWith(ctx, src, opts, false)
}

// readSketch is read with a sketch of each source that offers one
// (lockstate.Sketcher): a graph for findings only, marked so.
func readSketch(ctx context.Context, src Sources, opts Options) (*graph, error) {
	return readWith(ctx, src, opts, true)
}

func readWith(ctx context.Context, src Sources, opts Options, sketch bool) (*graph, error) {
	snaps := make([]*lockstate.Snapshot, 0, len(src.Locks))
	sketched := false
	for _, s := range src.Locks {
		var snap *lockstate.Snapshot
		var err error
		if sk, ok := s.(lockstate.Sketcher); ok && sketch {
			snap, err = sk.Sketch(ctx)
			sketched = true
		} else {
			snap, err = s.Read(ctx)
		}
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, snap)
	}
	g := merge(snaps)
	g.sketch = sketched
	g.opts = opts
	g.status = checkAll(src.Host, g)
	g.stopClock()
	return g, nil
}

// checkAll checks every identity the snapshots name. It runs after they
// were read, so a holder found dead died holding the lock, unless it
// released it in between: the confirming snapshot rules that out. What a
// backend knows of a process (an expired lease) comes first; the host
// checks only processes of this machine: any other is unknown unless its
// backend says.
func checkAll(h Host, g *graph) map[procid.ID]procid.Status {
	out := make(map[procid.ID]procid.Status)
	var local []procid.ID
	for _, id := range g.identities() {
		st := procid.Unknown
		if p, ok := g.process(id); ok {
			st = p.Status
		}
		out[id] = st
		if st == procid.Unknown && id.Host == "" && h != nil {
			local = append(local, id)
		}
	}
	if b, ok := h.(batchHost); ok && len(local) > 0 {
		all := b.CheckAll(local)
		for _, id := range local {
			out[id] = all[id]
		}
		return out
	}
	for _, id := range local {
		st, err := h.Check(id)
		if err != nil {
			st = procid.Unknown
		}
		out[id] = st
	}
	return out
}

// batchHost is a Host that checks many processes at once, as Check would,
// with procid.Unknown for a failed check: one look at what they share (a
// run's process table) serves them all.
type batchHost interface {
	CheckAll(ids []procid.ID) map[procid.ID]procid.Status
}

// unconfirmed reports whether fs holds findings not yet seen twice.
func unconfirmed(fs []Finding) bool {
	for _, f := range fs {
		if !f.proven {
			return true
		}
	}
	return false
}

// confirm returns the findings of now that were in before too, and those a
// backend's proof confirms; they are marked confirmed.
func confirm(before, now []Finding) []Finding {
	seen := make(map[string]bool, len(before))
	for _, f := range before {
		seen[f.Key()] = true
	}
	out := []Finding{}
	for _, f := range now {
		if f.proven || seen[f.Key()] {
			f.proven = true
			out = append(out, f)
		}
	}
	return out
}
