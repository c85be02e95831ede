// Package reportcmd is what a lockwatch command does with a report, the
// same for lockwatch and for the commands of other lock backends
// (lockwatch-etcd, lockwatch-pg): its output through a terminal-safe
// writer, colour only on a terminal, the report as a table, JSON or a
// Graphviz graph, the exit status a report calls for, and watch's loop.
//
//	func main() {
//		reportcmd.Main(func(ctx context.Context, stdout, stderr io.Writer) error {
//			r, err := report.Diagnose(ctx, src, report.Options{})
//			if err != nil {
//				fmt.Fprintln(stderr, "mytool: cannot read the locks:", reportcmd.Escape(err.Error()))
//				return &reportcmd.ExitError{Code: reportcmd.ExitUsage, Err: err}
//			}
//			if err := reportcmd.Print(stdout, r, reportcmd.Table, false); err != nil {
//				return &reportcmd.ExitError{Code: reportcmd.ExitFailed, Err: err}
//			}
//			return reportcmd.Verdict(r)
//		})
//	}
package reportcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/report"
)

// Exit statuses of attach and watch, in the way of grep and diff: 0
// nothing found, 1 failed, 2 trouble (usage, an unreadable source), 3 the
// finding.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitUsage    = 2
	ExitDeadlock = 3
)

// Exit statuses of run, which passes the program's own status through:
// its own take the codes timeout(1), env(1) and nohup(1) take, which
// programs seldom use, so that a program's 1, 2 or 3 is never read as the
// watcher's.
const (
	ExitRunDeadlock   = 124 // a deadlock was found (timeout(1): the command did not finish)
	ExitRunFailed     = 125 // the watcher itself failed: a usage or environment error
	ExitRunCannotExec = 126 // the program was found but cannot be run
	ExitRunNotFound   = 127 // the program was not found
)

// ExitError carries the status to exit with; its message was printed.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d: %v", e.Code, e.Err) }

func (e *ExitError) Unwrap() error { return e.Err }

// Escape returns s fit to print on a terminal: every string that comes from
// a run, a probe or a store (lock names, roles, arguments, frames, notes,
// error text) goes through it before a command prints it, so that nothing
// watched can send escape sequences to the user's terminal. C0 controls
// (tab and newline too), DEL and C1 controls are shown as \xHH (ESC as
// \x1b), Unicode's bidirectional overrides and line separators as \uHHHH,
// and bytes that are not UTF-8 as \xHH. Everything else is kept as it is.
// (Report.Write escapes what it prints itself.)
func Escape(s string) string { return safeout.Escape(s) }

// Main runs a command with terminal-safe stdout and stderr (NewWriter),
// flushes them, and exits with the status run's error carries: an
// ExitError's code, 1 for any other error, 0 for none.
func Main(run func(ctx context.Context, stdout, stderr io.Writer) error) {
	stdout, stderr := NewWriter(os.Stdout), NewWriter(os.Stderr)
	err := run(context.Background(), stdout, stderr)
	stdout.Flush()
	stderr.Flush()
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.Code)
	case err != nil:
		os.Exit(ExitFailed)
	}
}

// A Writer passes to its writer what its command writes, with every
// escape sequence and control character escaped except the report's own
// colours: a lock name, a role or a stack frame from the process watched
// never drives the user's terminal.
type Writer = safeout.Writer

// NewWriter returns the terminal-safe Writer of w.
func NewWriter(w io.Writer) *Writer { return safeout.NewWriter(w) }

// Raw returns the writer a Writer writes to (w itself for any other): for
// a child program's own output, and to ask whether it is a terminal.
func Raw(w io.Writer) io.Writer { return safeout.Raw(w) }

// IsTerminal reports whether w (or the writer under a Writer) is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := Raw(w).(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Colour reports whether a report written to w is coloured: only on a
// terminal, never with NO_COLOR set (https://no-color.org) nor on a dumb
// terminal (TERM=dumb, as Emacs shells and some CI logs set it).
func Colour(w io.Writer) bool {
	return IsTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// A Format is how a report is printed (-o).
type Format string

// The formats.
const (
	Table Format = "table" // the tables (Report.Write), coloured by Colour
	JSON  Format = "json"  // docs/json.md
	Dot   Format = "dot"   // the wait-for graph, for Graphviz (Report.WriteDot)
)

// ParseFormat checks -o's value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON, Dot:
		return f, nil
	}
	return "", fmt.Errorf("-o %q: use table, json or dot", s)
}

// Print writes r to w in format f. JSON is indented, or on one line when
// compact (watch: one report per line).
func Print(w io.Writer, r *report.Report, f Format, compact bool) error {
	switch f {
	case Dot:
		return r.WriteDot(w) // one graph per report
	case JSON:
		indent := "  "
		if compact {
			indent = ""
		}
		b, err := marshalReport(r, indent) // json.Marshal(r)'s bytes, indented as json.Indent would
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n')) // as json.Encoder ends a value
		return err
	}
	return r.Write(w, report.Style{Color: Colour(w)})
}

// Verdict is the exit status a report calls for, as an error: an
// ExitError of ExitDeadlock when it has a deadlock finding (or one of the
// kinds also names: lockwatch-etcd adds report.LostLock), nil otherwise.
func Verdict(r *report.Report, also ...report.Kind) error {
	if Code(r, also...) == ExitDeadlock {
		return &ExitError{Code: ExitDeadlock, Err: errors.New("deadlock")}
	}
	return nil
}

// Code is Verdict as a status: ExitDeadlock or ExitOK.
func Code(r *report.Report, also ...report.Kind) int {
	if r == nil {
		return ExitOK
	}
	if r.Deadlock() {
		return ExitDeadlock
	}
	for _, k := range also {
		if r.Has(k) {
			return ExitDeadlock
		}
	}
	return ExitOK
}

// findingsKey names a report's findings by their keys (not their
// durations): watch prints a report again only when it changes.
func findingsKey(r *report.Report) string {
	var b strings.Builder
	b.WriteString("report:")
	for i := range r.Findings {
		b.WriteString(r.Findings[i].Key() + "\n")
	}
	return b.String()
}

// A Watch diagnoses again and again and shows each report whose findings
// changed.
type Watch struct {
	// Every is how often to diagnose.
	Every time.Duration
	// Diagnose reads the locks once.
	Diagnose func(ctx context.Context) (*report.Report, error)
	// Show prints a report whose findings differ from the last one shown
	// (the first one too); its error ends the watch.
	Show func(r *report.Report) error
	// Failed says that Diagnose failed; called once for each run of the
	// same error.
	Failed func(err error)
	// Recovered, if not nil, says that Diagnose succeeds again after it
	// failed.
	Recovered func()
}

// Run watches until ctx ends or the process gets SIGINT or SIGTERM, and
// returns the last report read (nil if none was), or Show's error.
func (w Watch) Run(ctx context.Context) (*report.Report, error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	lastKey, lastErr := "", ""
	var last *report.Report
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		r, err := w.Diagnose(ctx)
		switch {
		case ctx.Err() != nil:
			return last, nil
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				w.Failed(err)
				lastErr = msg
			}
		default:
			if lastErr != "" && w.Recovered != nil {
				w.Recovered()
			}
			lastErr, last = "", r
			if k := findingsKey(r); k != lastKey {
				lastKey = k
				if err := w.Show(r); err != nil {
					return last, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, nil
		case <-t.C:
		}
	}
}
