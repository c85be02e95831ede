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
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/diag/texttable"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// PSSchema names ps's JSON format (docs/json.md).
const PSSchema = "lockwatch.ps/v2"

// psRun is one run in ps's JSON output (documented in docs/json.md).
type psRun struct {
	Name      string      `json:"name"` // what attach takes
	Dir       string      `json:"dir"`
	State     string      `json:"state"` // running, deadlock, ended, unreadable
	Error     string      `json:"error,omitempty"`
	Findings  []psFinding `json:"findings"` // the confirmed findings, counted by kind, most severe first
	Alive     int         `json:"alive"`    // processes alive
	Ended     int         `json:"ended"`    // processes that ended (closed or died)
	Processes []psProcess `json:"processes"`
}

// psFinding counts a run's findings of one kind.
type psFinding struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

type psProcess struct {
	report.ProcRow
	Probe bool `json:"probe"` // its control socket is in the run directory
	// ProbeDown: its probe stands down (no socket until the program's
	// next garbage collection; attach reads it from its memory meanwhile).
	ProbeDown bool `json:"probe_down,omitempty"`
}

// psOutput is ps's JSON document.
type psOutput struct {
	Schema string  `json:"schema"`
	Runs   []psRun `json:"runs"`
	// Probed are processes of this user whose environment names a run
	// directory (LOCKWATCH_DIR) that no listed run holds.
	Probed []psProbed `json:"probed"`
	// Go are the Go processes of this user that run no probe, read from
	// their memory (psgo.go).
	Go []psGo `json:"go"`
}

type psProbed struct {
	PID int    `json:"pid"`
	Dir string `json:"dir"`
	// ProbeDown: its probe stands down (as psProcess.ProbeDown).
	ProbeDown bool `json:"probe_down,omitempty"`
}

func (a *app) psCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "ps",
		Short: "List this user's runs, one line each, with their state and findings",
		Long: `ps lists the runs under the default root, newest first, one line each: its
name (what attach takes), state (running, deadlock, ended), its findings
counted by kind, how many of its processes are alive and ended, and its live
processes (pid and role; "no probe" when its control socket is missing).
Runs whose processes have all ended are left out unless --all; -o json
lists every process of each run. A run's state and findings are those
'lockwatch attach' reports (lockreg locks and the drop-in mutexes its probes
list), without live stacks. Exit status 3 when a listed run is in deadlock.

When another user took the default root (/dev/shm/lockwatch-UID), runs live
in a private fallback beside it (lockwatch-UID-*, owned by you, mode 0700):
ps lists those too.`,
		Example: `  lockwatch ps
  lockwatch ps --all          # ended runs too ('lockwatch prune' removes them)
  lockwatch ps -o json | jq '.runs[] | select(.state == "deadlock") | .name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkEnvRoot(); err != nil {
				return err
			}
			dirs := runDirs()
			out := psOutput{Schema: PSSchema, Runs: []psRun{}, Probed: []psProbed{}}
			known := make(map[string]bool)
			hidden := 0
			for _, d := range dirs {
				known[d] = true
				run := psRun{Name: filepath.Base(d), Dir: d, Findings: []psFinding{}, Processes: []psProcess{}}
				if !all && !mayBeRunning(d) {
					hidden++
					continue // ended, or a directory nothing ever joined
				}
				// The diagnosis attach makes (the registry and the
				// probes' drop-in mutexes), without live stacks: ps
				// never stops a process to take its stacks.
				src := a.sources(d, true)
				src.Stacks = nil
				r, err := report.Diagnose(cmd.Context(), src, a.opts)
				if err != nil {
					run.State, run.Error = "unreadable", oneLine(readError(d, err).Error())
					out.Runs = append(out.Runs, run)
					continue
				}
				for _, p := range r.Processes {
					if p.Alive {
						run.Alive++
					} else {
						run.Ended++
					}
					id := procID(p.PID, p.Start)
					_, err := os.Stat(probeclient.SocketPath(d, id))
					down := p.Alive && err != nil && downMark(d, id)
					run.Processes = append(run.Processes, psProcess{ProcRow: p, Probe: err == nil && p.Alive, ProbeDown: down})
				}
				for _, f := range r.Findings {
					if n := len(run.Findings); n > 0 && run.Findings[n-1].Kind == string(f.Kind) {
						run.Findings[n-1].Count++
					} else {
						run.Findings = append(run.Findings, psFinding{Kind: string(f.Kind), Count: 1})
					}
				}
				switch {
				case run.Alive == 0:
					run.State = "ended" // its findings, if any, are history
				case r.Deadlock():
					run.State = "deadlock"
				default:
					run.State = "running"
				}
				if run.State == "ended" && !all {
					hidden++
					continue
				}
				out.Runs = append(out.Runs, run)
			}
			if probed, err := liveness.Probed(probe.EnvDir); err == nil {
				for pid, d := range probed {
					if !known[filepath.Clean(d)] {
						out.Probed = append(out.Probed, psProbed{PID: pid, Dir: d, ProbeDown: probeDown(d, pid)})
					}
				}
				sort.Slice(out.Probed, func(i, j int) bool { return out.Probed[i].PID < out.Probed[j].PID })
			}
			out.Go = goProcesses(cmd.Context())
			code := ExitOK
			for _, r := range out.Runs {
				if r.State == "deadlock" {
					code = ExitDeadlock // as attach of that run would
				}
			}
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
				return exitCode(code)
			}
			if err := a.psTable(out, hidden); err != nil {
				return err
			}
			if err := psGoTable(a.stdout, out.Go); err != nil {
				return err
			}
			return exitCode(code)
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
	err := arena.ScanProcesses(dir, func(p arena.Process) bool {
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

// maxLiveListed is how many live processes a ps row names at most.
const maxLiveListed = 4

// maxErrorShown is how much of why a run is unreadable a ps row shows.
const maxErrorShown = 48

func (a *app) psTable(out psOutput, hidden int) error {
	var rows [][]string
	var lives [][]string // per row: its live processes, "pid role"
	for _, r := range out.Runs {
		state := r.State
		findings := "-"
		if r.Error != "" {
			// Why, in the findings' column, without the run's path (the
			// row names the run), cut short: -o json has it whole.
			why := strings.ReplaceAll(r.Error, r.Dir+"/", "")
			why = strings.TrimPrefix(strings.TrimSpace(strings.ReplaceAll(why, r.Dir, "")), ": ")
			if utf8.RuneCountInString(why) > maxErrorShown {
				why = string([]rune(why)[:maxErrorShown-1]) + cutMark
			}
			findings = reportcmd.Escape(why)
		}
		if len(r.Findings) > 0 {
			parts := make([]string, len(r.Findings))
			for i, f := range r.Findings {
				parts[i] = fmt.Sprintf("%d %s", f.Count, f.Kind)
			}
			findings = strings.Join(parts, ", ")
		}
		procs := "-"
		if r.Alive+r.Ended > 0 {
			procs = fmt.Sprintf("%d alive, %d ended", r.Alive, r.Ended)
		}
		var live []string
		for _, p := range r.Processes {
			if !p.Alive {
				continue
			}
			who := p.Role
			if who == "" {
				who = p.Command
			}
			s := strconv.Itoa(p.PID) + " " + reportcmd.Escape(who)
			switch {
			case p.ProbeDown:
				s += " (probe stands down)"
			case !p.Probe:
				s += " (no probe)"
			}
			live = append(live, s)
		}
		rows = append(rows, []string{reportcmd.Escape(r.Name), reportcmd.Escape(state), findings, procs, ""})
		lives = append(lives, live)
	}
	for _, p := range out.Probed {
		rows = append(rows, []string{reportcmd.Escape(p.Dir), "not under the default root", "-", "1 alive", ""})
		live := strconv.Itoa(p.PID)
		if p.ProbeDown {
			live += " (probe stands down)"
		}
		lives = append(lives, []string{live})
	}
	if len(rows) == 0 {
		msg := "no running runs"
		if hidden > 0 {
			msg += fmt.Sprintf(" (%s ended: 'lockwatch ps --all' lists them, 'lockwatch prune' removes them)", plural(hidden, "run"))
		}
		_, err := fmt.Fprintln(a.stdout, msg)
		return err
	}
	// The live processes take the room the other columns leave: as many
	// as fit the terminal's width, then "N more".
	width := termWidth(a.stdout)
	room := 0
	if width > 0 {
		used := 1 // the table's left margin
		for c := range 4 {
			w := len([]string{"run", "state", "findings", "processes"}[c])
			for _, r := range rows {
				w = max(w, utf8.RuneCountInString(r[c]))
			}
			used += w + 2
		}
		room = max(width-used, len("live"), 16)
	}
	for i, live := range lives {
		rows[i][4] = listFit(live, maxLiveListed, room)
	}
	w := fitWidth(a.stdout, width)
	if err := texttable.Write(w, []string{"run", "state", "findings", "processes", "live"}, rows); err != nil {
		return err
	}
	if hidden > 0 {
		fmt.Fprintf(w, "(%s ended, not shown: --all lists them, 'lockwatch prune' removes them)\n", plural(hidden, "run"))
	}
	return w.Flush()
}

// listFit joins items with ", ": at most max of them, and only as many as
// fit room columns (0: no limit), the rest counted as "N more"; "-" when
// there are none.
func listFit(items []string, most, room int) string {
	if len(items) == 0 {
		return "-"
	}
	for n := min(len(items), most); n >= 0; n-- {
		s := strings.Join(items[:n], ", ")
		if rest := len(items) - n; rest > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%d more", rest)
		}
		if room <= 0 || utf8.RuneCountInString(s) <= room || n == 0 {
			return s
		}
	}
	return "-"
}

// downMark reports whether the probe of process id in the run in dir keeps
// its stand-down mark (probeclient.DownFile).
func downMark(dir string, id proc.Identity) bool {
	_, _, base := arena.ProcessFiles(dir, id)
	fi, err := os.Lstat(filepath.Join(dir, probeclient.DownFile(base)))
	return err == nil && fi.Mode().IsRegular()
}

// probeDown is downMark for a live process known by its pid alone.
func probeDown(dir string, pid int) bool {
	st, err := proc.ReadStat(pid)
	return err == nil && downMark(dir, st.Identity())
}
