// Package etcdcli is the lockwatch-etcd command: lockwatch's attach, watch
// and run for runs whose locks live in etcd (package etcdreg).
//
//	err := etcdcli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
package etcdcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
)

// Environment that `run` gives the program, and that the demo reads.
const (
	EnvEndpoints = "LOCKWATCH_ETCD"     // comma-separated client URLs
	EnvRun       = "LOCKWATCH_ETCD_RUN" // the run's name
)

// Exit statuses, as lockwatch's.
const (
	exitFailed   = 1
	exitUsage    = 2
	exitDeadlock = 3
)

// ExitError carries the status to exit with; its message was printed.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d: %v", e.Code, e.Err) }

func (e *ExitError) Unwrap() error { return e.Err }

const usage = `usage: lockwatch-etcd COMMAND [flags] ...

  attach [flags] RUN           one report on an etcd run
  watch  [flags] RUN           the report, printed again on each change
  run    [flags] -- PROGRAM    run PROGRAM in a fresh etcd run and watch it

Flags: --etcd ENDPOINTS (default $LOCKWATCH_ETCD; run starts an embedded
server when none is given), -o table|json, --local-host NAME (the host name
this machine has in the records), --stuck-after DURATION.
Exit status: 0 nothing found, 1 failed, 2 usage or environment, 3 deadlock.
`

type config struct {
	endpoints  string
	output     string
	localHost  string
	stuckAfter time.Duration
	interval   time.Duration
	onDeadlock string
}

// Main runs lockwatch-etcd with args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return &ExitError{Code: exitUsage, Err: errors.New("no command")}
		}
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("lockwatch-etcd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.endpoints, "etcd", os.Getenv(EnvEndpoints), "etcd client `endpoints`, comma-separated")
	fs.StringVar(&c.output, "o", "table", "output `format`: table or json")
	fs.StringVar(&c.localHost, "local-host", "", "the host `name` of this machine in the records (default $LOCKWATCH_HOST, else the host name)")
	fs.DurationVar(&c.stuckAfter, "stuck-after", 10*time.Second, "a holder with waiters is stuck after holding this `long`")
	fs.DurationVar(&c.interval, "interval", 500*time.Millisecond, "watch and run: how often to read the run")
	if cmd == "run" {
		fs.StringVar(&c.onDeadlock, "on-deadlock", "wait", "run: `wait` (keep the program for you to attach) or kill")
	}
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args[1:]); err != nil {
		return &ExitError{Code: exitUsage, Err: err}
	}
	bad := func(format string, a ...any) error {
		err := fmt.Errorf(format, a...)
		fmt.Fprintln(stderr, "lockwatch-etcd:", err)
		return &ExitError{Code: exitUsage, Err: err}
	}
	if c.output != "table" && c.output != "json" {
		return bad("-o %q: use table or json", c.output)
	}
	if c.onDeadlock != "" && c.onDeadlock != "wait" && c.onDeadlock != "kill" {
		return bad("--on-deadlock %q: use wait or kill", c.onDeadlock)
	}
	switch cmd {
	case "attach", "watch":
		if fs.NArg() != 1 {
			return bad("%s takes one RUN (the run's name, as the program's $%s says)", cmd, EnvRun)
		}
		if c.endpoints == "" {
			return bad("no etcd endpoints: give --etcd http://HOST:2379 or set $%s", EnvEndpoints)
		}
		cli, err := dial(c.endpoints)
		if err != nil {
			return bad("%v", err)
		}
		defer cli.Close()
		if cmd == "attach" {
			return attach(ctx, cli, fs.Arg(0), c, stdout, stderr)
		}
		return watch(ctx, cli, fs.Arg(0), c, stdout, stderr)
	case "run":
		if fs.NArg() == 0 {
			return bad("run needs a PROGRAM: lockwatch-etcd run -- PROGRAM [ARG...]")
		}
		return run(ctx, fs.Args(), c, stdout, stderr)
	}
	return bad("unknown command %q", cmd)
}

func dial(endpoints string) (*clientv3.Client, error) {
	eps := strings.Split(endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd endpoints %q: %w", endpoints, err)
	}
	return cli, nil
}

func (c config) diagnose(ctx context.Context, cli *clientv3.Client, run string) (*etcdreg.Diagnosis, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return etcdreg.Diagnose(ctx, cli, run, etcdreg.DiagnoseOptions{LocalHost: c.localHost, StuckAfter: c.stuckAfter})
}

func (c config) write(w io.Writer, d *etcdreg.Diagnosis) error {
	v := newView(d, strings.Split(c.endpoints, ","))
	if c.output == "json" {
		return v.writeJSON(w)
	}
	return v.writeTable(w)
}

func attach(ctx context.Context, cli *clientv3.Client, run string, c config, stdout, stderr io.Writer) error {
	d, err := c.diagnose(ctx, cli, run)
	if err != nil {
		fmt.Fprintln(stderr, "lockwatch-etcd:", err)
		return &ExitError{Code: exitUsage, Err: err}
	}
	if err := c.write(stdout, d); err != nil {
		return &ExitError{Code: exitFailed, Err: err}
	}
	if len(d.Findings) > 0 {
		return &ExitError{Code: exitDeadlock, Err: errors.New("deadlock")}
	}
	return nil
}

// watch prints the report whenever its findings change, and says once per
// distinct error when the store cannot be read, then that it can again.
func watch(ctx context.Context, cli *clientv3.Client, run string, c config, stdout, stderr io.Writer) error {
	lastKey, lastErr := "", ""
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		d, err := c.diagnose(ctx, cli, run)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				fmt.Fprintf(stderr, "lockwatch-etcd: %s: store unreachable or run unreadable: %v\n", time.Now().Format("15:04:05.000"), err)
				lastErr = msg
			}
		default:
			if lastErr != "" {
				fmt.Fprintf(stderr, "lockwatch-etcd: %s: store reachable again (revision %d)\n", time.Now().Format("15:04:05.000"), d.Snapshot.Revision)
				lastErr = ""
			}
			if k := findingsKey(d); k != lastKey {
				lastKey = k
				if err := c.write(stdout, d); err != nil {
					return &ExitError{Code: exitFailed, Err: err}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func findingsKey(d *etcdreg.Diagnosis) string {
	var b strings.Builder
	for _, f := range d.Findings {
		b.WriteString(f.Kind + " " + f.Lock + " " + f.Summary + "\n")
	}
	return b.String()
}

// run starts the program in a fresh run (and an embedded etcd when no
// endpoints are given), watches it, and prints the report when a deadlock
// is found.
func run(ctx context.Context, argv []string, c config, stdout, stderr io.Writer) error {
	// The program writes to the same writers, from exec's copying
	// goroutines when they are not files.
	stdout, stderr = lockedWriter(stdout), lockedWriter(stderr)
	if c.endpoints == "" {
		dir, err := os.MkdirTemp("", "lockwatch-etcd-")
		if err != nil {
			fmt.Fprintln(stderr, "lockwatch-etcd:", err)
			return &ExitError{Code: exitUsage, Err: err}
		}
		defer os.RemoveAll(dir)
		srv, err := embedded.Start(dir)
		if err != nil {
			fmt.Fprintln(stderr, "lockwatch-etcd:", err)
			return &ExitError{Code: exitUsage, Err: err}
		}
		defer srv.Stop()
		c.endpoints = strings.Join(srv.Endpoints(), ",")
		fmt.Fprintf(stderr, "lockwatch-etcd: started an embedded etcd at %s (data in %s, removed at the end)\n", c.endpoints, dir)
	}
	cli, err := dial(c.endpoints)
	if err != nil {
		fmt.Fprintln(stderr, "lockwatch-etcd:", err)
		return &ExitError{Code: exitUsage, Err: err}
	}
	defer cli.Close()
	runName := fmt.Sprintf("run-%s-%d", time.Now().Format("20060102-150405"), os.Getpid())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = append(os.Environ(), EnvEndpoints+"="+c.endpoints, EnvRun+"="+runName)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "lockwatch-etcd:", err)
		return &ExitError{Code: exitUsage, Err: err}
	}
	fmt.Fprintf(stderr, "lockwatch-etcd: run %s; attach with: lockwatch-etcd attach --etcd %s %s\n", runName, c.endpoints, runName)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killGroup := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	t := time.NewTicker(c.interval)
	defer t.Stop()
	reported := false
	for {
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &ExitError{Code: max(ee.ExitCode(), exitFailed), Err: err}
			}
			if err != nil {
				return &ExitError{Code: exitFailed, Err: err}
			}
			return nil
		case <-sigs:
			killGroup()
			<-done
			return &ExitError{Code: 130, Err: errors.New("interrupted")}
		case <-ctx.Done():
			killGroup()
			<-done
			return ctx.Err()
		case <-t.C:
		}
		if reported {
			continue
		}
		d, err := c.diagnose(ctx, cli, runName)
		if err != nil || !confirmedDeadlock(d) {
			continue
		}
		if err := c.write(stdout, d); err != nil {
			return &ExitError{Code: exitFailed, Err: err}
		}
		reported = true
		if c.onDeadlock == "kill" {
			killGroup()
			<-done
			return &ExitError{Code: exitDeadlock, Err: errors.New("deadlock")}
		}
		fmt.Fprintf(stderr, "lockwatch-etcd: deadlock found; the program is kept running: attach with lockwatch-etcd attach --etcd %s %s, or press Ctrl-C\n", c.endpoints, runName)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// lockedWriter serialises writes to w, unless it is a file (which the
// program then writes to directly).
func lockedWriter(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok {
		return w
	}
	return &syncWriter{w: w}
}

// confirmedDeadlock: a finding with waiters blocked.
func confirmedDeadlock(d *etcdreg.Diagnosis) bool {
	for _, f := range d.Findings {
		if len(f.Waiters) > 0 || len(f.Cycle) > 0 {
			return true
		}
	}
	return false
}
