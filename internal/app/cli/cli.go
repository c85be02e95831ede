package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/internal/source/goprocsrc"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// Exit codes of attach, watch, ps and stacks, in the way of grep and diff:
// 0 nothing found, 2 trouble, and 3 for the finding.
const (
	ExitOK       = reportcmd.ExitOK
	ExitFailed   = reportcmd.ExitFailed
	ExitUsage    = reportcmd.ExitUsage
	ExitDeadlock = reportcmd.ExitDeadlock
	// ExitLockOrder: lockwatch run --fail-on=lock-order found locks taken
	// in both orders.
	ExitLockOrder = 4
)

// Exit codes of run, which passes PROGRAM's own status through: lockwatch's
// own statuses take the codes timeout(1), env(1) and nohup(1) take, which
// programs seldom use, so that PROGRAM's 1, 2 or 3 is never read as
// lockwatch's.
const (
	ExitRunDeadlock   = reportcmd.ExitRunDeadlock   // a deadlock was found (timeout(1): the command did not finish)
	ExitRunFailed     = reportcmd.ExitRunFailed     // lockwatch itself failed: a usage or environment error
	ExitRunCannotExec = reportcmd.ExitRunCannotExec // PROGRAM was found but cannot be run
	ExitRunNotFound   = reportcmd.ExitRunNotFound   // PROGRAM was not found
)

// exitError ends a command with a code; a nil err prints nothing.
type exitError struct {
	code int
	err  error
	// program: the code is PROGRAM's own status, which run passes through
	// unchanged.
	program bool
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
	liveStacks     int // --live-stacks: 0 for all (report.AllLiveStacks)
	// mem is the process attach or watch reads from its memory, when it
	// runs no probe (memory.go); nil otherwise.
	mem *goprocsrc.Source
	// dropin is the drop-in arena of that process, when it imports the
	// drop-in sync (its exact holder records; memory.go); nil otherwise.
	dropin *dropinsrc.Process
	// memNotes are said in every report of that process (why it was read
	// from its memory).
	memNotes []string
	exe      string // attach --exe: a core file's binary
}

// read reads a run's snapshot within the limits the flags set.
func (a *app) read(dir string) (*arena.Snapshot, error) {
	return arena.ReadSnapshotWith(dir, arena.ReadOptions{Events: a.events, MoreEvents: "use --events N for more"})
}

// Main runs lockwatch with args (without the program name) and returns the
// exit code. It writes only to stdout and stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Every byte lockwatch writes goes through the terminal writer
	// (internal/diag/safeout): what a run holds never drives the terminal.
	sout, serr := safeout.NewWriter(stdout), safeout.NewWriter(stderr)
	defer sout.Flush()
	defer serr.Flush()
	stdout, stderr = sout, serr
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, events: arena.DefaultReadEvents, liveStacks: report.DefaultLiveStacks,
		opts: report.Options{StuckAfter: defaultStuckAfter, ProbeTimeout: time.Second, ProbeConcurrency: report.DefaultProbeConcurrency}}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	code := ExitOK
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(stderr, "lockwatch: "+reportcmd.Escape(oneLine(ee.err.Error())))
		}
		code = ee.code
	default:
		// Cobra's own errors: unknown command, wrong argument count.
		fmt.Fprintln(stderr, "lockwatch: "+reportcmd.Escape(cobraError(root, cmd, err, args)))
		code = ExitUsage
	}
	if cmd != nil && cmd.Name() == "run" && code == ExitUsage && (ee == nil || !ee.program) {
		code = ExitRunFailed // run's own trouble is never PROGRAM's 2
	}
	return code
}

// cobraError words one of cobra's errors in one line that points at the
// help of the command it concerns.
func cobraError(root, cmd *cobra.Command, err error, args []string) string {
	msg := err.Error()
	if cmd == nil {
		cmd = root
	}
	if strings.HasPrefix(msg, "unknown command ") {
		word, _, _ := strings.Cut(strings.TrimPrefix(msg, "unknown command "), " for ")
		name, _ := strconv.Unquote(word)
		if name == "" && len(args) > 0 {
			name = args[0]
		}
		out := fmt.Sprintf("unknown command %q", name)
		if s := cmd.SuggestionsFor(name); len(s) > 0 {
			out += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return out + fmt.Sprintf("; see '%s --help' for the commands", cmd.CommandPath())
	}
	return fmt.Sprintf("%s%s; see '%s --help'", cmdPrefix(cmd), oneLine(msg), cmd.CommandPath())
}

// cmdPrefix is "attach: " for a subcommand, "" for lockwatch itself (whose
// messages start "lockwatch: " anyway).
func cmdPrefix(c *cobra.Command) string {
	if !c.HasParent() {
		return ""
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ") + ": "
}

// escapeText is report.Escape for multi-line text: newlines and tabs are
// kept, everything else is escaped.
func escapeText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cols := strings.Split(l, "\t")
		for j, c := range cols {
			cols[j] = reportcmd.Escape(c)
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
		Long: `lockwatch runs or attaches to programs whose goroutines and processes share
locks (lockreg's cross-process locks, the drop-in sync.Mutex and RWMutex of
github.com/lockwatch/lockwatch/sync, locks in etcd) and tells who holds each
lock, who waits for it, whether the holder is still alive, and which
goroutines wait for each other in a cycle.

Exit status of attach, watch, ps, stacks, holders, prune and version: 0
nothing found, 2 usage or environment error, 3 a deadlock was found (attach,
watch, ps, stacks). run passes PROGRAM's own status through and takes
timeout(1)'s codes for its own: 124 a deadlock was found, 125 lockwatch
failed, 126 PROGRAM cannot be run, 127 PROGRAM not found.`,
		Example: `  lockwatch run -- ./myprogram --flag     # run it under watch
  lockwatch ps                            # this user's runs
  lockwatch attach 4242                   # report on the run pid 4242 belongs to
  lockwatch stacks crash.txt              # group the goroutines of a dump
  lockwatch attach -o dot 4242 | dot -Tsvg > graph.svg   # draw the wait-for graph`,
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case a.output == "dot" && !graphs(cmd):
				return usagef("%s-o dot: only attach, watch and run draw the wait-for graph; want table or json", cmdPrefix(cmd))
			case a.output != "table" && a.output != "json" && a.output != "dot":
				return usagef("-o %q: want table, json or dot (attach, watch, run)", a.output)
			}
			if a.events <= 0 {
				return usagef("--events %d: want a positive number of events", a.events)
			}
			if a.opts.ProbeConcurrency <= 0 {
				return usagef("--probe-concurrency %d: want a positive number of probes", a.opts.ProbeConcurrency)
			}
			switch {
			case a.liveStacks < 0:
				return usagef("--live-stacks %d: want how many processes to ask for live stacks, or 0 for all of them", a.liveStacks)
			case a.liveStacks == 0:
				a.opts.LiveStacks = report.AllLiveStacks
			default:
				a.opts.LiveStacks = a.liveStacks
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json (attach, watch and run also dot: the wait-for graph for Graphviz)")
	_ = root.RegisterFlagCompletionFunc("output", func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		if graphs(c) {
			return []string{"table", "json", "dot"}, cobra.ShellCompDirectiveNoFileComp
		}
		return []string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%s%v; see '%s --help'", cmdPrefix(c), err, c.CommandPath())
	})
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetHelpCommand(helpCmd(root))
	root.AddCommand(a.runCmd(), a.attachCmd(), a.watchCmd(), a.psCmd(), a.stacksCmd(), a.holdersCmd(), a.pruneCmd(), a.versionCmd())
	for _, c := range root.Commands() {
		switch c.Name() {
		case "attach", "watch", "run":
			a.reportFlags(c)
		case "ps":
			c.Flags().DurationVar(&a.opts.StuckAfter, "stuck-after", a.opts.StuckAfter,
				"count a live holder as stuck after holding a lock this long while another goroutine waits as long")
		}
	}
	// The report's boolean flags may also be written before the command
	// ("lockwatch --text-dumps attach PID"): cobra finds the command by
	// skipping the flags before it, and takes a flag it does not know at
	// that level for one with a value, which would swallow the command's
	// name. Declared (hidden) on lockwatch itself, they are known to be
	// boolean; the command's own flag is the one that is set.
	root.Flags().Bool("text-dumps", false, "")
	_ = root.Flags().MarkHidden("text-dumps")
	a.etcdCommands(root)     // etcd runs: handed to lockwatch-etcd (etcd.go)
	a.postgresCommands(root) // PostgreSQL servers: handed to lockwatch-pg (postgres.go)
	return root
}

// defaultStuckAfter is --stuck-after's default.
const defaultStuckAfter = 10 * time.Second

// reportFlags adds to c (attach, watch, run) the flags that say how a
// report is read and what it asks the probes for.
func (a *app) reportFlags(c *cobra.Command) {
	fs := c.Flags()
	fs.DurationVar(&a.opts.StuckAfter, "stuck-after", defaultStuckAfter,
		"report a live holder as stuck after holding a lock this long while another goroutine waits as long")
	fs.IntVar(&a.events, "events", arena.DefaultReadEvents,
		"how many of the run's most recent lock events to read (a run made with a larger event ring holds more; the report says when it has more)")
	fs.DurationVar(&a.opts.ProbeTimeout, "probe-timeout", time.Second,
		"how long a probe is given to answer before the report goes on without it")
	fs.IntVar(&a.opts.ProbeConcurrency, "probe-concurrency", report.DefaultProbeConcurrency,
		"how many probes are asked at once")
	fs.IntVar(&a.liveStacks, "live-stacks", report.DefaultLiveStacks,
		"how many processes a report asks for live stacks, stuck holders' first (0: every process involved); the others' stacks come from their records")
	fs.BoolVar(&a.opts.TextDumps, "text-dumps", false,
		"ask the probes of stuck holders for text dumps, which stop each process for the whole dump, instead of short execution traces")
}

// helpCmd is 'lockwatch help [COMMAND]': cobra's, but a topic that is no
// command is a usage error (exit 2), not a help page and exit 0.
func helpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "Help about any command",
		Long:  "help prints the help of COMMAND (as 'lockwatch COMMAND --help'), or lockwatch's.",
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			var names []string
			if len(args) == 0 {
				for _, c := range root.Commands() {
					if c.IsAvailableCommand() {
						names = append(names, c.Name())
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 || (cmd == root && len(args) > 0) {
				topic := strings.Join(args, " ")
				msg := fmt.Sprintf("help: no command %q", topic)
				if s := root.SuggestionsFor(topic); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q?)", s[0])
				}
				return usagef("%s; see 'lockwatch --help' for the commands", msg)
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	}
}

// graphs reports whether c draws the wait-for graph with -o dot.
func graphs(c *cobra.Command) bool {
	switch c.Name() {
	case "attach", "watch", "run":
		return c.HasParent() && !c.Parent().HasParent()
	}
	return false
}

// versionCmd is 'lockwatch version', as 'lockwatch --version' (kubectl,
// docker and go have the command).
func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print lockwatch's version, VCS revision, Go version and platform",
		Long: `version prints what 'lockwatch --version' prints: lockwatch's version, the VCS
revision it was built from (when the build recorded one, "modified" when the
tree had changes), the Go version and the platform. With -o json, a document
with a schema.`,
		Example: `  lockwatch version
  lockwatch version -o json | jq -r .revision`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			_, err := fmt.Fprintln(a.stdout, v.String())
			return err
		},
	}
}

// VersionSchema names the version command's JSON format (docs/json.md).
const VersionSchema = "lockwatch.version/v1"

// versionInfo is the version command's JSON document.
type versionInfo struct {
	Schema   string `json:"schema"`
	Version  string `json:"version"`            // the module's version, "(devel)" for a build from a checkout
	Revision string `json:"revision,omitempty"` // the VCS revision, 12 digits, when recorded
	Modified bool   `json:"modified"`           // the tree had uncommitted changes
	Go       string `json:"go"`
	Platform string `json:"platform"` // GOOS/GOARCH
}

// String is "lockwatch VERSION (REVISION[, modified]) GO OS/ARCH".
func (v versionInfo) String() string {
	out := "lockwatch " + v.Version
	if v.Revision != "" {
		rev := v.Revision
		if v.Modified {
			rev += ", modified"
		}
		out += " (" + rev + ")"
	}
	return out + " " + v.Go + " " + v.Platform
}

// version is "lockwatch VERSION (REVISION[, modified]) GO OS/ARCH", from
// the build information the go command records.
func version() string { return buildVersion().String() }

// buildVersion reads the build information the go command records.
func buildVersion() versionInfo {
	v := versionInfo{Schema: VersionSchema, Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool { return reportcmd.IsTerminal(w) }

// style is how reports render on w: colour only on a terminal, never with
// NO_COLOR set nor on a dumb terminal (reportcmd.Colour).
func style(w io.Writer) report.Style {
	return report.Style{Color: colour(w)}
}

func colour(w io.Writer) bool { return reportcmd.Colour(w) }

// completeRuns completes PID|RUNDIR arguments with the run directories.
func completeRuns(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return runDirs(), cobra.ShellCompDirectiveDefault
}

// noArgs refuses arguments, pointing at the command's help.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%stakes no arguments, got %q; see '%s --help'", cmdPrefix(cmd), args[0], cmd.CommandPath())
	}
	return nil
}

// oneArg wants exactly one argument, named what in the message.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%swants one argument, %s; got %d; see '%s --help'", cmdPrefix(cmd), what, len(args), cmd.CommandPath())
		}
		return nil
	}
}
