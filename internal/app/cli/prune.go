package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// unjoinedGrace is how old a run directory that no process has joined must
// be before prune removes it: lockwatch run makes the directory before
// PROGRAM starts, and a program may take a while to start its probe.
const unjoinedGrace = time.Minute

// pruneVerdict is what prune does with one run directory.
type pruneVerdict struct {
	dir    string
	remove bool
	why    string // removed: clean, never joined, ended with findings, other format; kept: running, findings, in use, young, other format
	bytes  int64
	format uint32 // the arena's format version, when it is not this lockwatch's
}

func (a *app) pruneCmd() *cobra.Command {
	var all, dryRun bool
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove this user's ended runs",
		Long: `prune removes the run directories under the default root (and its private
fallbacks, see ps) whose processes have all ended: those that ended cleanly,
and directories that no process ever joined (after a minute). A run that
ended with something to diagnose (a process that died, a lock still held) is
kept, so that 'lockwatch attach' can still read it, unless --all. A run with
a live process, or named by a live process's LOCKWATCH_DIR, is never removed.
A run in another arena format (an older lockwatch's), whose processes cannot
be read, is removed by --all once no live process maps or holds open its
files or names it in LOCKWATCH_DIR.`,
		Example: `  lockwatch prune             # remove the ended runs with nothing to diagnose
  lockwatch prune --dry-run   # say what would be removed
  lockwatch prune --all       # remove every ended run, findings or not`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkEnvRoot(); err != nil {
				return err
			}
			// The default root and the private fallbacks of this user.
			var vs []pruneVerdict
			for _, root := range arena.Roots() {
				v, err := pruneRuns(root, all, dryRun)
				vs = append(vs, v...)
				if err != nil {
					return usagef("%v", err)
				}
			}
			if a.output == "json" {
				return a.pruneJSON(vs, dryRun)
			}
			removed, kept, findings, otherGone, otherKept := 0, 0, 0, 0, 0
			var freed int64
			for _, v := range vs {
				switch {
				case v.remove:
					removed++
					freed += v.bytes
					why := v.why
					if v.format != 0 {
						otherGone++
						why = fmt.Sprintf("arena format version %d, which this lockwatch cannot read: %s", v.format, unusedProof)
					}
					if dryRun {
						fmt.Fprintf(a.stdout, "would remove %s (%s)\n", filepath.Base(v.dir), why)
					}
				case v.why == "ended with findings":
					findings++
				case v.why == "other format":
					otherKept++
				default:
					kept++
				}
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			fmt.Fprintf(a.stdout, "%s %s (%s)", verb, plural(removed, "run"), mib(freed))
			if otherGone > 0 {
				fmt.Fprintf(a.stdout, ", %d of them in another arena format, ended as far as lockwatch can prove without reading it: %s", otherGone, unusedProof)
			}
			if findings > 0 {
				fmt.Fprintf(a.stdout, "; kept %s that ended with something to diagnose ('lockwatch ps --all' lists them, 'lockwatch prune --all' removes them)", plural(findings, "run"))
			}
			if otherKept > 0 {
				fmt.Fprintf(a.stdout, "; kept %s in another arena format, which this lockwatch cannot read ('lockwatch prune --all' removes those that %s)", plural(otherKept, "run"), unusedTest)
			}
			if kept > 0 {
				fmt.Fprintf(a.stdout, "; kept %s still running, in use or unreadable", plural(kept, "run"))
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "remove ended runs that have something to diagnose too")
	c.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "say what would be removed, remove nothing")
	return c
}

// unusedProof is what proves that a run nobody can read has ended.
const (
	unusedProof = "no live process maps or holds open its files or names it in LOCKWATCH_DIR"
	unusedTest  = "no live process maps, holds open or names in LOCKWATCH_DIR"
)

// pruneRuns judges, and unless dryRun removes, the run directories under
// root.
func pruneRuns(root string, all, dryRun bool) ([]pruneVerdict, error) {
	dirs, err := arena.RunDirs(root)
	if err != nil {
		return nil, err
	}
	inUse := make(map[string]bool)
	if probed, err := liveness.Probed(probe.EnvDir); err == nil {
		for _, d := range probed {
			inUse[filepath.Clean(d)] = true
		}
	} else {
		return nil, fmt.Errorf("cannot tell which runs live processes name (%v); nothing removed", err)
	}
	var out []pruneVerdict
	for _, d := range dirs {
		v := judgeRun(d, all, inUse[filepath.Clean(d)])
		if v.remove {
			v.bytes = dirBytes(d)
			if !dryRun {
				gone, err := removeRun(d, v)
				if err != nil {
					return out, err
				}
				if !gone {
					v.remove, v.why, v.format, v.bytes = false, "in use", 0, 0
				}
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// judgeRun says whether prune removes the run in dir.
func judgeRun(dir string, all, inUse bool) pruneVerdict {
	v := pruneVerdict{dir: dir}
	if inUse {
		v.why = "in use"
		return v
	}
	procs, err := arena.ReadProcesses(dir)
	switch {
	case errors.Is(err, lockreg.ErrNotRun):
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < unjoinedGrace {
			v.why = "young"
			return v
		}
		v.remove, v.why = true, "never joined"
		return v
	case errors.Is(err, arena.ErrVersion):
		// Its process table is another format's: it cannot prove the
		// run ended, but a run whose files no live process maps or
		// holds open, and that none names in LOCKWATCH_DIR, has ended.
		var ae *arena.ArenaError
		if errors.As(err, &ae) {
			v.format = ae.Version
		}
		release, user, err := liveness.HoldUnused(dir)
		switch {
		case err != nil:
			v.why, v.format = "unreadable", 0 // who uses it cannot be told
		case user != "":
			v.why, v.format = "in use", 0
		case all:
			v.remove, v.why = true, "other format"
		default:
			v.why = "other format"
		}
		if release != nil {
			release() // removeRun proves it again, and holds the proof while it removes
		}
		return v
	case err != nil:
		v.why = "unreadable" // not ours to judge: attach says why
		return v
	}
	clean := true
	for _, p := range procs {
		if p.State == arena.ProcExited {
			continue // it closed its registry: it has left the run
		}
		clean = false
		st, _ := (liveness.System{}).Check(p.Identity())
		if !st.Dead() {
			v.why = "running"
			return v
		}
	}
	if clean {
		// Every process closed its registry: is a lock still held?
		if s, err := arena.ReadSnapshot(dir); err == nil {
			for _, l := range s.Locks {
				clean = clean && !l.Held()
			}
		} else {
			clean = false
		}
	}
	switch {
	case clean:
		v.remove, v.why = true, "ended cleanly"
	case all:
		v.remove, v.why = true, "ended with findings"
	default:
		v.why = "ended with findings"
	}
	return v
}

// removeRun removes the run in dir. A run of another format is removed
// while the proof that no process uses its files holds (their leases), so
// that a process that opens one meanwhile waits until it is gone.
// It reports false if a process uses it since it was judged: it is kept.
func removeRun(dir string, v pruneVerdict) (bool, error) {
	if v.format == 0 {
		return true, os.RemoveAll(dir)
	}
	release, user, err := liveness.HoldUnused(dir)
	switch {
	case err != nil:
		return false, fmt.Errorf("%s: %v; not removed", dir, err)
	case user != "":
		return false, nil
	}
	defer release()
	return true, os.RemoveAll(dir)
}

// dirBytes is the memory or disk the files in dir take: their allocated
// blocks, not their apparent size (an arena is a sparse file: its pages
// never touched take nothing, as du(1) counts).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += allocated(fi)
			}
		}
		return nil
	})
	return n
}

// allocated is the bytes a file's blocks take (st_blocks counts 512-byte
// units whatever the file system's block size), or its size where the
// system does not say.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// PruneSchema names prune's JSON format (docs/json.md).
const PruneSchema = "lockwatch.prune/v1"

// pruneOutput is prune's JSON document.
type pruneOutput struct {
	Schema string     `json:"schema"`
	DryRun bool       `json:"dry_run"` // nothing was removed: Removed is what would be
	Bytes  int64      `json:"bytes"`   // the memory or disk the removed runs took (allocated blocks)
	Remove []pruneRun `json:"removed"`
	Kept   []pruneRun `json:"kept"`
}

// pruneRun is one run prune removed (or would) or kept, and why: removed
// "ended cleanly", "never joined", "ended with findings" (--all), "other
// format" (--all); kept "running", "in use", "young", "unreadable", "ended
// with findings", "other format".
type pruneRun struct {
	Name  string `json:"name"`
	Dir   string `json:"dir"`
	Why   string `json:"why"`
	Bytes int64  `json:"bytes,omitempty"`
	// Format is the arena's format version when it is not this
	// lockwatch's (why "other format").
	Format uint32 `json:"format,omitempty"`
}

func (a *app) pruneJSON(vs []pruneVerdict, dryRun bool) error {
	out := pruneOutput{Schema: PruneSchema, DryRun: dryRun, Remove: []pruneRun{}, Kept: []pruneRun{}}
	for _, v := range vs {
		r := pruneRun{Name: filepath.Base(v.dir), Dir: v.dir, Why: v.why, Bytes: v.bytes, Format: v.format}
		if v.remove {
			out.Remove = append(out.Remove, r)
			out.Bytes += v.bytes
		} else {
			out.Kept = append(out.Kept, r)
		}
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
