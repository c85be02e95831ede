package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/lockreg"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitUsage    = 2
	ExitDeadlock = 3
)

// exitError ends a command with a code; a nil err prints nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usagef is a usage or environment error: exit 2, one line.
func usagef(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode ends a command with code and no message.
func exitCode(code int) error {
	if code == ExitOK {
		return nil
	}
	return &exitError{code: code}
}

// app is one invocation: its streams and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	output         string // table or json
	opts           report.Options
	events         int // --events: how many of the event ring's last events are read
}

// read reads a run's snapshot within the limits the flags set.
func (a *app) read(dir string) (*lockreg.Snapshot, error) {
	return lockreg.ReadSnapshotWith(dir, lockreg.ReadOptions{Events: a.events, MoreEvents: "use --events N for more"})
}

// Main runs lockwatch with args (without the program name) and returns the
// exit code. It writes only to stdout and stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "lockwatch: "+report.Escape(oneLine(ee.err.Error())))
		}
		return ee.code
	}
	// Cobra's own errors: unknown command or flag, wrong argument count.
	fmt.Fprintf(stderr, "lockwatch: %s; see 'lockwatch --help'\n", report.Escape(oneLine(err.Error())))
	return ExitUsage
}

// escapeText is report.Escape for multi-line text: newlines and tabs are
// kept, everything else is escaped.
func escapeText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cols := strings.Split(l, "\t")
		for j, c := range cols {
			cols[j] = report.Escape(c)
		}
		lines[i] = strings.Join(cols, "\t")
	}
	return strings.Join(lines, "\n")
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "lockwatch",
		Short: "Live deadlock diagnostics for multi-process Go programs",
		Long: `lockwatch runs or attaches to programs that share lockreg locks, and tells
who holds each lock, who waits for it, and whether the holder is still alive.

Exit status: 0 nothing found, 1 the program failed (run), 2 usage or
environment error, 3 a deadlock was found.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return usagef("-o %q: want table or json", a.output)
			}
			if a.events <= 0 {
				return usagef("--events %d: want a positive number of events", a.events)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&a.opts.StuckAfter, "stuck-after", 10*time.Second,
		"report a live holder as stuck after holding a lock this long while another goroutine waits as long")
	root.PersistentFlags().IntVar(&a.events, "events", lockreg.DefaultReadEvents,
		"how many of the run's most recent lock events to read (a run made with a larger event ring holds more; the report says when it has more)")
	root.PersistentFlags().DurationVar(&a.opts.ProbeTimeout, "probe-timeout", time.Second,
		"how long a probe is given to answer before the report goes on without it")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v; see 'lockwatch --help'", err) })
	root.AddCommand(a.runCmd(), a.attachCmd(), a.watchCmd(), a.psCmd(), a.stacksCmd(), a.holdersCmd())
	return root
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// style is how reports render on w: colour only on a terminal, never with
// NO_COLOR set (https://no-color.org).
func style(w io.Writer) report.Style {
	return report.Style{Color: isTerminal(w) && os.Getenv("NO_COLOR") == ""}
}

// completeRuns completes PID|RUNDIR arguments with the run directories.
func completeRuns(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return runDirs(), cobra.ShellCompDirectiveDefault
}
