package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

func (a *app) attachCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "attach PID|RUN|CORE",
		Short: "Report once on the run a process belongs to, or on a run",
		Long: `attach reads the run's lock registry, checks that every holder and waiter is
alive, asks the probes of the processes involved for their live stacks, and
prints the report: findings first, then locks, waiters, processes, recent
events and stacks. With -o dot it prints the wait-for graph instead, in
Graphviz's DOT language: goroutines in boxes grouped by process, locks as
ellipses, the finding's cycle or chain in red, dead processes dashed red.

RUN is a run's name (as ps prints it) or its directory; PID is any process
of the run, alive or dead (the dead holder a finding names). A Go process
that runs no probe is read from its memory, without stopping it: the
sync.Mutex and sync.RWMutex its goroutines wait for, with the holders the
evidence names, marked inferred (and, in a program that imports lockwatch's
sync, its drop-in mutexes from their records); CORE is a core file of a Go
program (gcore, GOTRACEBACK=crash), read the same way, with its binary
(--exe, or the path the core names). Exit status 3 when a deadlock is found
(a cycle through inferred holders too).`,
		Example: `  lockwatch attach 4242                          # the run pid 4242 belongs to, or pid 4242 itself
  lockwatch attach run-20261125-195805-27281-0   # a run by its name (lockwatch ps)
  lockwatch attach core.4242 --exe ./server      # a core file and its binary
  lockwatch attach -o json 4242 | jq .findings
  lockwatch attach -o dot 4242 | dot -Tsvg > waits.svg   # the wait-for graph`,
		Args:              oneArg("a PID, a RUN (name or directory) or a CORE file"),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ok, err := a.attachFileLocks(cmd.Context(), args[0]); ok {
				return err // a process in no run that holds or waits for a file lock (filelocks.go)
			}
			t, err := a.resolveTarget(args[0])
			if err != nil {
				return err
			}
			defer a.closeMemory()
			a.opts.First = t.id // its live stacks first
			r, err := a.diagnose(cmd.Context(), t.dir)
			if err != nil {
				return err
			}
			if err := a.printFit(a.stdout, r, 0); err != nil {
				return err
			}
			return exitCode(memoryVerdict(r))
		},
	}
	c.Flags().StringVar(&a.exe, "exe", "", "the binary of a CORE file (default: the path the core names)")
	return c
}

func (a *app) watchCmd() *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "watch PID|RUN",
		Short: "Keep the report of a run up to date until Ctrl-C",
		Example: `  lockwatch watch 4242
  lockwatch watch -o json run-20261125-195805-27281-0 > reports.jsonl`,
		Long: `watch refreshes the report: on a terminal it redraws it in place; otherwise it
prints each report that differs from the one before (with -o json, one JSON
document per line). A process death is seen at once (pidfd), other changes
every --interval. On a terminal the report fits its height: the findings
first, then as much of the rest as fits, and how many lines were left out.
watch ends by itself when the run has ended: none of its processes is
alive, and no live process names it in its LOCKWATCH_DIR (which a new
process of the run would inherit). Exit status at Ctrl-C or the run's end:
3 if the last report found a deadlock.`,
		Args:              oneArg("a PID or a RUN (name or directory)"),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.resolveTarget(args[0])
			if err != nil {
				return err
			}
			defer a.closeMemory()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			term := isTerminal(a.stdout) && a.output == "table" // redrawn in place
			var last string
			var lastReport *report.Report
			a.opts.First = t.id // its live stacks first
			err = a.monitor(ctx, t.dir, interval, func(r *report.Report) bool {
				lastReport = r
				fp := fingerprint(r)
				switch {
				case term:
					// Redrawn to fit the screen: the findings first,
					// the rest as far as it goes.
					_, rows := termSize(a.stdout)
					fmt.Fprint(a.stdout, safeout.Ctl("\x1b[H\x1b[2J"))
					a.printFit(a.stdout, r, rows)
				case fp != last:
					a.print(a.stdout, r, true)
				}
				last = fp
				if runEnded(r, t.dir) {
					// Nothing in it can change any more: as 'kubectl logs
					// -f' ends with its pod.
					fmt.Fprintln(a.stderr, "lockwatch: the run has ended (none of its processes is alive); watch stops")
					return true
				}
				return false
			})
			if err != nil {
				return err
			}
			return exitCode(memoryVerdict(lastReport))
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "how often to re-read the run when no process died")
	return c
}

// runEnded reports whether the run in dir has ended: every process of its
// report is proved to have ended (exited or died: none alive, none
// unknown), and no live process of this user names the run in its
// LOCKWATCH_DIR, which a new process of the run would inherit (as a test
// binary under 'lockwatch run -- go test ./...' does from go test, which
// never joins itself).
func runEnded(r *report.Report, dir string) bool {
	for _, p := range r.Processes {
		if p.Alive || p.State == "unknown" {
			return false
		}
	}
	if len(r.Processes) == 0 {
		return false // nothing has joined it yet
	}
	probed, err := liveness.Probed(probe.EnvDir)
	if err != nil {
		return false // cannot tell: watch on
	}
	for _, d := range probed {
		if filepath.Clean(d) == filepath.Clean(dir) {
			return false
		}
	}
	return true
}

// verdict is the exit code a report calls for.
func verdict(r *report.Report) int { return reportcmd.Code(r) }

// diagnose reports on the run in dir, or says in one line why it cannot.
func (a *app) diagnose(ctx context.Context, dir string) (*report.Report, error) {
	if a.mem != nil || a.dropin != nil {
		return a.diagnoseMemory(ctx)
	}
	r, err := report.Diagnose(ctx, a.sources(dir, true), a.opts)
	if err != nil {
		return nil, readError(dir, err)
	}
	return r, nil
}

// printFit writes a report as print does, a table report cut to the
// terminal's width (each longer line ends in a mark) and, with rows > 0, to
// rows lines: the report's first lines (the findings come first), then one
// that says how many lines were left out and how to see them all.
func (a *app) printFit(w io.Writer, r *report.Report, rows int) error {
	if a.output != "table" {
		return a.print(w, r, false)
	}
	var b bytes.Buffer
	st := style(w)
	st.Brief = rows > 0 // a screen: the tables before the edges' frames
	if err := r.Write(&b, st); err != nil {
		return err
	}
	// The findings and notes, up to the first blank line, are folded at
	// the terminal's width, so that no advice is lost; the tables and
	// stacks below are cut, each cut line ending in a mark.
	head, tail, _ := strings.Cut(strings.TrimSuffix(b.String(), "\n"), "\n\n")
	var lines []string
	for _, l := range strings.Split(head, "\n") {
		lines = append(lines, foldLine(l, termWidth(w))...)
	}
	if tail != "" {
		lines = append(lines, "")
		lines = append(lines, strings.Split(tail, "\n")...)
	}
	if rows > 2 && len(lines) > rows-1 {
		more := len(lines) - (rows - 2)
		lines = append(lines[:rows-2], fmt.Sprintf("... %d more lines ('lockwatch attach' prints them all)", more))
	}
	fw := fitWidth(w, termWidth(w))
	for _, l := range lines {
		io.WriteString(fw, l+"\n")
	}
	return fw.Flush()
}

// sources are what a report on the run in dir reads: its lockreg arena
// (within the limits the flags set), this machine's processes and,
// withProbes, their probes' drop-in mutexes and live stacks; without, the
// lock-order edges of drop-in mutexes the processes left in files.
func (a *app) sources(dir string, withProbes bool) report.Sources {
	// The host proves that a process is the run's (it maps the run's
	// arena), not only that its pid and start time are alive.
	src := report.Sources{Locks: []lockstate.Source{runArena{lockregsrc.Source{Dir: dir, ReadSnapshot: a.read}, dir}}, Host: liveness.ForRun(dir)}
	if withProbes {
		timeout := a.opts.ProbeTimeout
		if timeout <= 0 {
			timeout = time.Second
		}
		mutexes := dropinsrc.New(dir, timeout)
		mutexes.Concurrency = a.opts.ProbeConcurrency
		src.Locks = append(src.Locks, mutexes)
		src.Stacks = probes{dir}
	} else {
		// The drop-in mutexes' lock-order edges that the processes left.
		src.Locks = append(src.Locks, dropinsrc.Ended(dir))
	}
	return src
}

// print writes a report in the chosen format; compact puts a JSON report on
// one line (a stream of reports).
func (a *app) print(w io.Writer, r *report.Report, compact bool) error {
	return reportcmd.Print(w, r, reportcmd.Format(a.output), compact)
}

// fingerprint is what makes two reports differ for watch: findings (by
// their keys: not the summary, since a stuck holder's says how long it
// has held), who holds and who waits; not the durations, which always grow.
func fingerprint(r *report.Report) string {
	var b strings.Builder
	b.WriteString(findingsPrint(r))
	for _, l := range r.Locks {
		if l.Holder != nil {
			fmt.Fprintf(&b, "L%s|%s|%d|%d|%s;", l.Name, l.State, l.Holder.PID, l.Holder.Goroutine, l.Holder.State)
		}
	}
	for _, w := range r.Waiters {
		fmt.Fprintf(&b, "W%d|%d|%s;", w.PID, w.Goroutine, w.Lock)
	}
	for _, p := range r.Processes {
		fmt.Fprintf(&b, "P%d|%s|%s;", p.PID, p.State, p.Exit)
	}
	return b.String()
}

// monitor diagnoses the run in dir until ctx ends or each returns true:
// at once when a process of the run dies (a pidfd per process tells), and
// every interval otherwise.
func (a *app) monitor(ctx context.Context, dir string, interval time.Duration, each func(*report.Report) bool) error {
	w, err := liveness.NewWatcher()
	if err != nil {
		return usagef("%v", err)
	}
	defer w.Close()
	stop := context.AfterFunc(ctx, w.Wake)
	defer stop()
	return a.monitorWith(ctx, dir, interval, w, each)
}

func (a *app) monitorWith(ctx context.Context, dir string, interval time.Duration, w *liveness.Watcher, each func(*report.Report) bool) error {
	for ctx.Err() == nil {
		r, err := a.diagnose(ctx, dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while a report was read: the last one stands
			}
			return err
		}
		for _, p := range r.Processes {
			if p.Alive {
				w.Add(procID(p.PID, p.Start)) // a failure leaves the interval to notice
			}
		}
		if each(r) {
			return nil
		}
		if _, err := w.Wait(interval); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}
