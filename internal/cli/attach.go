package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/liveness"
	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/internal/report/dropinsrc"
	"github.com/lockwatch/lockwatch/internal/report/lockregsrc"
	"github.com/lockwatch/lockwatch/internal/report/lockstate"
)

func (a *app) attachCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "attach PID|RUNDIR",
		Short: "Report once on the run a process belongs to, or on a run directory",
		Long: `attach reads the run's lock registry, checks that every holder and waiter is
alive, asks the probes of the processes involved for their live stacks, and
prints the report: findings first, then locks, waiters, processes, recent
events and stacks. Exit status 3 when a deadlock is found.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := resolve(args[0])
			if err != nil {
				return err
			}
			r, err := a.diagnose(cmd.Context(), t.dir)
			if err != nil {
				return err
			}
			if err := a.print(a.stdout, r, false); err != nil {
				return err
			}
			return exitCode(verdict(r))
		},
	}
}

func (a *app) watchCmd() *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "watch PID|RUNDIR",
		Short: "Keep the report of a run up to date until Ctrl-C",
		Long: `watch refreshes the report: on a terminal it redraws it in place; otherwise it
prints each report that differs from the one before (with -o json, one JSON
document per line). A process death is seen at once (pidfd), other changes
every --interval. Exit status on Ctrl-C: 3 if the last report found a deadlock.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := resolve(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			term := isTerminal(a.stdout)
			var last string
			var lastReport *report.Report
			err = a.monitor(ctx, t.dir, interval, func(r *report.Report) bool {
				lastReport = r
				fp := fingerprint(r)
				switch {
				case term:
					fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
					a.print(a.stdout, r, false)
				case fp != last:
					a.print(a.stdout, r, true)
				}
				last = fp
				return false
			})
			if err != nil {
				return err
			}
			return exitCode(verdict(lastReport))
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "how often to re-read the run when no process died")
	return c
}

// verdict is the exit code a report calls for.
func verdict(r *report.Report) int {
	if r != nil && r.Deadlock() {
		return ExitDeadlock
	}
	return ExitOK
}

// diagnose reports on the run in dir, or says in one line why it cannot.
func (a *app) diagnose(ctx context.Context, dir string) (*report.Report, error) {
	r, err := report.Diagnose(ctx, a.sources(dir, true), a.opts)
	if err != nil {
		return nil, readError(dir, err)
	}
	return r, nil
}

// sources are what a report on the run in dir reads: its lockreg arena
// (within the limits the flags set), this machine's processes and,
// withProbes, their probes' drop-in mutexes and live stacks.
func (a *app) sources(dir string, withProbes bool) report.Sources {
	// The host proves that a process is the run's (it maps the run's
	// arena), not only that its pid and start time are alive.
	src := report.Sources{Locks: []lockstate.Source{lockregsrc.Source{Dir: dir, ReadSnapshot: a.read}}, Host: liveness.ForRun(dir)}
	if withProbes {
		timeout := a.opts.ProbeTimeout
		if timeout <= 0 {
			timeout = time.Second
		}
		src.Locks = append(src.Locks, dropinsrc.New(dir, timeout))
		src.Stacks = probes{dir}
	}
	return src
}

// print writes a report in the chosen format; compact puts a JSON report on
// one line (a stream of reports).
func (a *app) print(w io.Writer, r *report.Report, compact bool) error {
	if a.output == "json" {
		enc := json.NewEncoder(w)
		if !compact {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(r)
	}
	return r.Write(w, style(w))
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
