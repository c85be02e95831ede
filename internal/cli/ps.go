package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/liveness"
	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// psRun is one run in ps's JSON output (documented in docs/json.md).
type psRun struct {
	Dir       string      `json:"dir"`
	State     string      `json:"state"` // running, deadlock, ended, unreadable
	Error     string      `json:"error,omitempty"`
	Findings  []string    `json:"findings"` // kinds of the confirmed findings
	Processes []psProcess `json:"processes"`
}

type psProcess struct {
	report.ProcRow
	Probe bool `json:"probe"` // its control socket is in the run directory
}

// psOutput is ps's JSON document.
type psOutput struct {
	Runs []psRun `json:"runs"`
	// Probed are processes of this user whose environment names a run
	// directory (LOCKWATCH_DIR) that no listed run holds.
	Probed []psProbed `json:"probed"`
}

type psProbed struct {
	PID int    `json:"pid"`
	Dir string `json:"dir"`
}

func (a *app) psCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "ps",
		Short: "List this user's runs and their probed processes, with state",
		Long: `ps lists the run directories under the default root (newest first) with each
run's state (running, deadlock, ended) and its processes. Runs whose processes
have all ended are left out unless --all. When another user took the default
root (/dev/shm/lockwatch-UID), runs live in a private fallback beside it
(lockwatch-UID-*, owned by you, mode 0700): ps lists those too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dirs := runDirs()
			out := psOutput{Runs: []psRun{}, Probed: []psProbed{}}
			known := make(map[string]bool)
			for _, d := range dirs {
				known[d] = true
				run := psRun{Dir: d, Findings: []string{}, Processes: []psProcess{}}
				if !all && !mayBeRunning(d) {
					continue // ended, or a directory nothing ever joined
				}
				r, err := report.Diagnose(cmd.Context(), a.sources(d, false), a.opts)
				if err != nil {
					run.State, run.Error = "unreadable", oneLine(readError(d, err).Error())
					out.Runs = append(out.Runs, run)
					continue
				}
				alive := 0
				for _, p := range r.Processes {
					if p.Alive {
						alive++
					}
					_, err := os.Stat(probe.SocketPath(d, procID(p.PID, p.Start)))
					run.Processes = append(run.Processes, psProcess{ProcRow: p, Probe: err == nil && p.Alive})
				}
				for _, f := range r.Findings {
					run.Findings = append(run.Findings, string(f.Kind))
				}
				switch {
				case alive == 0:
					run.State = "ended" // its findings, if any, are history
				case r.Deadlock():
					run.State = "deadlock"
				default:
					run.State = "running"
				}
				if run.State == "ended" && !all {
					continue
				}
				out.Runs = append(out.Runs, run)
			}
			if probed, err := liveness.Probed(probe.EnvDir); err == nil {
				for pid, d := range probed {
					if !known[filepath.Clean(d)] {
						out.Probed = append(out.Probed, psProbed{PID: pid, Dir: d})
					}
				}
				sort.Slice(out.Probed, func(i, j int) bool { return out.Probed[i].PID < out.Probed[j].PID })
			}
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return a.psTable(out)
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "list ended runs too")
	return c
}

// psChecks bounds the liveness checks of ps's first look at one run.
const psChecks = 4096

// mayBeRunning is ps's cheap first look at a run: whether any process of its
// process table is not proven dead. The full diagnosis, with its confirming
// snapshots and probe requests, is for those runs only; a directory holding
// no run, or one whose processes are all gone, is skipped without it. The
// table is streamed, and a run with more than psChecks processes, all dead
// so far, is given the (bounded) diagnosis rather than checked to the end.
func mayBeRunning(dir string) bool {
	found, n := false, 0
	err := lockreg.ScanProcesses(dir, func(p lockreg.Process) bool {
		if n++; n > psChecks {
			found = true
			return false
		}
		if st, _ := (liveness.System{}).Check(p.Identity()); !st.Dead() {
			found = true
		}
		return !found
	})
	if err != nil {
		return !errors.Is(err, lockreg.ErrNotRun) // other errors are worth showing
	}
	return found
}

func (a *app) psTable(out psOutput) error {
	var rows [][]string
	for _, r := range out.Runs {
		state := r.State
		if len(r.Findings) > 0 {
			state += " (" + strings.Join(r.Findings, ", ") + ")"
		}
		if r.Error != "" {
			state += ": " + r.Error
		}
		name, state := report.Escape(filepath.Base(r.Dir)), report.Escape(state)
		if len(r.Processes) == 0 {
			rows = append(rows, []string{name, state, "-", "-", "-", "-"})
		}
		for i, p := range r.Processes {
			who := p.Role
			if who == "" {
				who = p.Command
			}
			probeCol := "no"
			if p.Probe {
				probeCol = "yes"
			}
			pstate := p.State
			if p.Exit != "" {
				pstate += ", " + p.Exit
			}
			if i > 0 {
				name, state = "", ""
			}
			rows = append(rows, []string{name, state, strconv.Itoa(p.PID), report.Escape(who), report.Escape(pstate), probeCol})
		}
	}
	for _, p := range out.Probed {
		rows = append(rows, []string{report.Escape(p.Dir), "not a run under the default root", strconv.Itoa(p.PID), "-", "alive", "?"})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no runs (use --all to list ended ones)")
		return err
	}
	return report.Table(a.stdout, []string{"run", "state", "pid", "role or command", "process", "probe"}, rows)
}
