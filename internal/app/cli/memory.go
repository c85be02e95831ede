package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/lockwatch/lockwatch/internal/diag/dropinmem"
	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/internal/source/goprocsrc"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/stackdump"
)

// resolveTarget is resolve for attach and watch: a live Go process that
// runs no probe is read from its memory (a.mem) instead.
func (a *app) resolveTarget(arg string) (target, error) {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() && goproc.IsCore(arg) {
		src, err := goprocsrc.OpenCore(arg, a.exe)
		if err != nil {
			return target{}, usagef("%s", oneLine(err.Error()))
		}
		a.mem = src
		return target{id: src.ID()}, nil
	}
	if a.exe != "" {
		return target{}, usagef("--exe is for a core file: %s is not one", arg)
	}
	t, err := resolve(arg)
	var np *noProbeError
	if !errors.As(err, &np) {
		return t, err
	}
	if err := a.attachMemory(np); err != nil {
		return target{}, err
	}
	return target{id: np.id}, nil
}

// attachMemory opens a process that runs no probe: its memory (a.mem) and,
// when it imports the drop-in sync, its drop-in arena (a.dropin), whose
// records name the holders of its drop-in mutexes exactly. A process whose
// memory cannot be read but whose arena can is reported from its arena.
func (a *app) attachMemory(np *noProbeError) error {
	a.memNotes = nil
	if np.down {
		a.memNotes = append(a.memNotes, downNote(np.id.PID))
	}
	_, derr := dropinmem.View(np.id, np.dir)
	hasArena := !errors.Is(derr, inproc.ErrNoArena)
	src, err := a.openMemory(np)
	if err != nil && !hasArena {
		return err
	}
	if hasArena {
		a.dropin = &dropinsrc.Process{ID: np.id, Dir: np.dir}
		if derr != nil {
			// Said in the report, which the memory still gives.
			a.dropin.Notes = append(a.dropin.Notes, fmt.Sprintf("pid %d's drop-in mutexes could not be read: %v", np.id.PID, oneLine(derr.Error())))
		}
	}
	if err != nil {
		if derr != nil {
			return err // neither can be read: the memory's reason
		}
		a.dropin.Notes = append(a.dropin.Notes, fmt.Sprintf("pid %d's goroutines could not be read from its memory (%s): only its drop-in mutexes are reported",
			np.id.PID, strings.TrimPrefix(oneLine(err.Error()), "lockwatch: ")))
		return nil
	}
	a.mem = src
	return nil
}

// openMemory attaches to a process that runs no probe, or says in one
// line why it cannot.
func (a *app) openMemory(np *noProbeError) (*goprocsrc.Source, error) {
	src, err := goprocsrc.Attach(np.id.PID, goproc.Options{})
	if err != nil {
		if errors.Is(err, goproc.ErrNotGo) {
			return nil, usagef("pid %d (%s) is not running a probe, and is not a Go program whose memory lockwatch reads; start it with 'lockwatch run' or import github.com/lockwatch/lockwatch/probe", np.id.PID, np.comm)
		}
		return nil, usagef("pid %d (%s) is not running a probe, and its memory cannot be read: %v", np.id.PID, np.comm, oneLine(err.Error()))
	}
	if src.ID() != np.id {
		src.Close()
		return nil, usagef("pid %d exited, or exec'd another program, while lockwatch attached", np.id.PID)
	}
	return src, nil
}

// closeMemory closes the process read from memory, if any.
func (a *app) closeMemory() {
	if a.mem != nil {
		a.mem.Close()
		a.mem = nil
	}
	a.dropin = nil
}

// diagnoseMemory reports on the process read from memory: its drop-in
// mutexes from their records first, then the locks its goroutines wait
// for in its memory, but for those the records have (a drop-in mutex
// wraps a sync.Mutex at its own address); live stacks from its memory.
func (a *app) diagnoseMemory(ctx context.Context) (*report.Report, error) {
	src := report.Sources{Host: liveness.System{}}
	if a.dropin != nil {
		src.Locks = append(src.Locks, a.dropin)
	}
	if a.mem != nil {
		if a.dropin != nil {
			a.mem.Skip = a.dropin.Has
		}
		src.Locks = append(src.Locks, a.mem)
		src.Stacks = a.mem.Stacks()
	}
	r, err := report.Diagnose(ctx, src, a.opts)
	if err != nil {
		return nil, usagef("%s", oneLine(err.Error()))
	}
	r.Notes = append(r.Notes, a.memNotes...)
	return r, nil
}

// downNote says why a process that runs a probe was read from its memory.
func downNote(pid int) string {
	return fmt.Sprintf("pid %d's probe stands down (every goroutine looked blocked, so it gave way for Go's runtime to judge; it serves again after the program's next garbage collection): read from its memory", pid)
}

// memoryVerdict is the exit code of a report read from memory: a cycle
// through inferred holders counts as a deadlock for the exit status (the
// goroutines are blocked; only who holds is inferred), though it is never
// acted on.
func memoryVerdict(r *report.Report) int {
	if r != nil && r.Has(report.InferredCycle) {
		return ExitDeadlock
	}
	return verdict(r)
}

// memoryStacks reads the goroutines of a process that runs no probe from
// its memory.
func (a *app) memoryStacks(ctx context.Context, np *noProbeError, all bool) (*stacksOutput, error) {
	src, err := a.openMemory(np)
	if err != nil {
		return nil, err
	}
	out, err := a.imageStacks(ctx, src, "pid "+strconv.Itoa(np.id.PID), all)
	if err == nil && np.down {
		out.Notes = append(out.Notes, downNote(np.id.PID))
	}
	return out, err
}

// coreStacks reads the goroutines of a core file.
func (a *app) coreStacks(ctx context.Context, path string, all bool) (*stacksOutput, error) {
	src, err := goprocsrc.OpenCore(path, "")
	if err != nil {
		return nil, usagef("%s", oneLine(err.Error()))
	}
	return a.imageStacks(ctx, src, path, all)
}

func (a *app) imageStacks(ctx context.Context, src *goprocsrc.Source, name string, all bool) (*stacksOutput, error) {
	defer src.Close()
	img, err := src.Image(ctx)
	if err != nil {
		return nil, usagef("%s", oneLine(err.Error()))
	}
	snap := goprocsrc.Goroutines(img)
	out := &stacksOutput{Schema: StacksSchema, Source: name, Format: "memory", Dumps: []stacksDump{}, Notes: append([]string{}, img.Notes...)}
	b := src.Process().Binary
	how := "read from the process's memory without stopping it (no probe answers)"
	if core := src.Process().Core; core != "" {
		how = fmt.Sprintf("read from the core file, with the binary %s", b.Path)
	}
	out.Notes = append(out.Notes, fmt.Sprintf("%s: %s, layout from %s; running goroutines have no stack; runtime goroutines are left out", how, img.GoVersion, b.LayoutSource))
	out.Dumps = append(out.Dumps, dumpOf(stackdump.GroupGoroutines(snap.Goroutines, stackdump.IgnoreArgs), all))
	return out, nil
}
