package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/source/goprocsrc"
	"github.com/lockwatch/lockwatch/lockstate"
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
	src, err := a.openMemory(np)
	if err != nil {
		return target{}, err
	}
	a.mem = src
	return target{id: np.id}, nil
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
}

// diagnoseMemory reports on the process read from memory.
func (a *app) diagnoseMemory(ctx context.Context) (*report.Report, error) {
	src := report.Sources{Locks: []lockstate.Source{a.mem}, Host: liveness.System{}}
	r, err := report.Diagnose(ctx, src, a.opts)
	if err != nil {
		return nil, usagef("%s", oneLine(err.Error()))
	}
	return r, nil
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
	return a.imageStacks(ctx, src, "pid "+strconv.Itoa(np.id.PID), all)
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
	how := "read from the process's memory without stopping it (it runs no probe)"
	if core := src.Process().Core; core != "" {
		how = fmt.Sprintf("read from the core file, with the binary %s", b.Path)
	}
	out.Notes = append(out.Notes, fmt.Sprintf("%s: %s, layout from %s; running goroutines have no stack; runtime goroutines are left out", how, img.GoVersion, b.LayoutSource))
	out.Dumps = append(out.Dumps, dumpOf(stackdump.GroupGoroutines(snap.Goroutines, stackdump.IgnoreArgs), all))
	return out, nil
}
