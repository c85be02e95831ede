// Package etcdcli is the lockwatch-etcd command: lockwatch's attach, watch
// and run for runs whose locks live in etcd (package etcdreg). It diagnoses
// and renders through lockwatch's own report (report, fed by
// etcdsrc), so its tables and JSON are lockwatch's. `lockwatch attach
// etcd://HOST:PORT/RUN`, `lockwatch watch etcd://...` and `lockwatch run
// --etcd ...` run it.
//
//	err := etcdcli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
package etcdcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// Environment that `run` gives the program, and that the demo reads.
const (
	EnvEndpoints = etcdreg.EnvEndpoints // comma-separated client URLs
	EnvRun       = "LOCKWATCH_ETCD_RUN" // the run's name
)

// Exit statuses, as lockwatch's: attach and watch exit 0, 1, 2 or 3; run
// passes PROGRAM's status through and takes timeout(1)'s codes for its own.
const (
	exitFailed   = reportcmd.ExitFailed
	exitUsage    = reportcmd.ExitUsage
	exitDeadlock = reportcmd.ExitDeadlock // a deadlock, or a lost lock, was found

	exitRunDeadlock   = reportcmd.ExitRunDeadlock
	exitRunFailed     = reportcmd.ExitRunFailed
	exitRunCannotExec = reportcmd.ExitRunCannotExec
	exitRunNotFound   = reportcmd.ExitRunNotFound
)

// ExitError carries the status to exit with; its message was printed.
type ExitError = reportcmd.ExitError

const usage = `usage: lockwatch-etcd COMMAND [flags] ...

  attach [flags] RUN|URL      one report on an etcd run, or on etcd's own locks
  watch  [flags] RUN|URL      the report, printed again on each change
  run    [flags] -- PROGRAM   run PROGRAM in a fresh etcd run and watch it
  ps     [etcd://HOST:PORT]   the runs kept in etcd, their processes and locks
  prune  [etcd://HOST:PORT] [RUN...]
                              remove ended runs (no live lease, no lock held)

URL is etcd://HOST:PORT[,HOST:PORT...]/RUN (lockwatch run --etcd prints it);
RUN alone takes the endpoints from --etcd. etcd://HOST:PORT/?lock=PREFIX
[&lock=PREFIX...] diagnoses locks and elections lockwatch did not take: the
prefixes given to etcdctl lock, etcdctl elect, concurrency.NewMutex or
concurrency.NewElection. lockwatch itself runs these commands for etcd runs:
lockwatch attach etcd://..., lockwatch run --etcd ...

Flags: --etcd ENDPOINTS (default $LOCKWATCH_ETCD; run starts an embedded
server when none is given), -o table|json|dot, --local-host NAME (the host name
this machine has in the records; default $LOCKWATCH_HOST, else the host
name), --stuck-after DURATION, --interval DURATION (watch, run),
--live-stacks N (how many processes a report asks for live stacks, the
first findings' first; 0: all of them; default 8), and for run
--on-deadlock wait|kill, --report FILE.

Auth and TLS, as etcdctl's: --user NAME (or NAME:PASSWORD; default
$ETCDCTL_USER), --password-file FILE (default $ETCDCTL_PASSWORD; never on
the command line), --cacert FILE, --cert FILE, --key FILE (default
$ETCDCTL_CACERT, $ETCDCTL_CERT, $ETCDCTL_KEY); with TLS files an etcd://
URL's endpoints are https. run gives them to PROGRAM as $LOCKWATCH_ETCD_USER,
$LOCKWATCH_ETCD_PASSWORD, $LOCKWATCH_ETCD_CACERT, $LOCKWATCH_ETCD_CERT and
$LOCKWATCH_ETCD_KEY (etcdreg.ConnFromEnv reads them).

Exit status of attach and watch: 0 nothing found, 1 failed, 2 usage or
environment (etcd unreachable), 3 a deadlock or a lost lock was found. run
passes PROGRAM's status through (128+N for a signal N) and takes timeout(1)'s
codes for its own: 124 a deadlock was found, 125 lockwatch-etcd failed, 126
PROGRAM cannot be run, 127 PROGRAM was not found.
`

type config struct {
	endpoints  string
	output     string
	localHost  string
	stuckAfter time.Duration
	liveStacks int // --live-stacks; 0: every process
	interval   time.Duration
	onDeadlock string
	reportPath string

	user, passwordFile, cacert, cert, key string

	// sources, when set, is what attach and watch read instead of a run:
	// lock prefixes (etcd://HOST:PORT/?lock=PREFIX).
	sources func() report.Sources
}

// conn returns the connection the flags and the environment name, or an
// error saying which of them is wrong.
func (c config) conn() (etcdreg.Conn, error) {
	conn := etcdreg.Conn{Endpoints: strings.Split(c.endpoints, ","), User: c.user, CACert: c.cacert, Cert: c.cert, Key: c.key}
	if name, pw, ok := strings.Cut(c.user, ":"); ok {
		conn.User, conn.Password = name, pw
	}
	switch {
	case c.passwordFile != "":
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return conn, fmt.Errorf("--password-file: %w: give the file that holds the password of --user", err)
		}
		conn.Password = strings.TrimRight(string(b), "\r\n")
	case conn.Password == "":
		conn.Password = os.Getenv("ETCDCTL_PASSWORD")
	}
	return conn, nil
}

// dial connects to etcd as the flags and the environment say; the caller
// closes the client.
func (c config) dial(ctx context.Context) (*clientv3.Client, error) {
	conn, err := c.conn()
	if err != nil {
		return nil, err
	}
	return etcdreg.Dial(ctx, conn)
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
	usageCode := exitUsage
	if cmd == "run" {
		usageCode = exitRunFailed
	}
	fs := flag.NewFlagSet("lockwatch-etcd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.endpoints, "etcd", os.Getenv(EnvEndpoints), "etcd client `endpoints`, comma-separated")
	fs.StringVar(&c.output, "o", "table", "output `format`: table, json or dot (the wait-for graph)")
	fs.StringVar(&c.localHost, "local-host", "", "the host `name` of this machine in the records (default $LOCKWATCH_HOST, else the host name)")
	fs.DurationVar(&c.stuckAfter, "stuck-after", 10*time.Second, "a holder with waiters is stuck after holding this `long`")
	fs.DurationVar(&c.interval, "interval", 500*time.Millisecond, "watch and run: how often to read the run")
	fs.IntVar(&c.liveStacks, "live-stacks", report.DefaultLiveStacks, "how many processes a report asks for live stacks, the first findings' first (0: all of them)")
	fs.StringVar(&c.user, "user", os.Getenv("ETCDCTL_USER"), "etcd user `NAME` (or NAME:PASSWORD), when etcd's auth is enabled")
	fs.StringVar(&c.passwordFile, "password-file", "", "`file` holding the password of --user (default $ETCDCTL_PASSWORD)")
	fs.StringVar(&c.cacert, "cacert", os.Getenv("ETCDCTL_CACERT"), "PEM `file` of the CA that signed etcd's certificate (https endpoints)")
	fs.StringVar(&c.cert, "cert", os.Getenv("ETCDCTL_CERT"), "PEM `file` of the client certificate (https endpoints)")
	fs.StringVar(&c.key, "key", os.Getenv("ETCDCTL_KEY"), "PEM `file` of the client certificate's key (https endpoints)")
	if cmd == "run" {
		fs.StringVar(&c.onDeadlock, "on-deadlock", "wait", "run: `wait` (keep the program for you to attach) or kill")
		fs.StringVar(&c.reportPath, "report", "", "run: write the report to this `file` instead of stderr")
	}
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bad := func(format string, a ...any) error {
		return reportcmd.Refuse(stderr, "lockwatch-etcd", usageCode, fmt.Errorf(format, a...))
	}
	if help, err := reportcmd.ParseFlags(fs, args[1:], usageCode); help || err != nil {
		return err
	}
	if _, err := reportcmd.ParseFormat(c.output); err != nil {
		return bad("%v", err)
	}
	if c.liveStacks < 0 {
		return bad("--live-stacks %d: want how many processes to ask for live stacks, or 0 for all of them", c.liveStacks)
	}
	if c.onDeadlock != "" && c.onDeadlock != "wait" && c.onDeadlock != "kill" {
		return bad("--on-deadlock %q: use wait or kill", c.onDeadlock)
	}
	switch cmd {
	case "attach", "watch":
		if fs.NArg() != 1 {
			return bad("%s takes one RUN (the run's name, as the program's $%s says) or %sHOST:PORT/RUN", cmd, EnvRun, etcdsrc.URLScheme)
		}
		run := fs.Arg(0)
		if eps, prefixes, ok, err := etcdsrc.ParseLockURL(run); ok {
			// Locks lockwatch did not take: etcd's own lock prefixes.
			if err != nil {
				return bad("%v", err)
			}
			if c.cacert != "" || c.cert != "" || c.key != "" {
				for i, ep := range eps {
					eps[i] = "https://" + strings.TrimPrefix(ep, "http://")
				}
			}
			c.endpoints = strings.Join(eps, ",")
			cli, err := c.dial(ctx)
			if err != nil {
				return bad("%v", err)
			}
			defer cli.Close()
			if cmd == "attach" {
				c.sources = func() report.Sources { return etcdsrc.PrefixSources(cli, prefixes) }
				return attach(ctx, cli, run, c, stdout, stderr)
			}
			// Watching, lockwatch times what etcd does not: since when it
			// has seen each contender.
			seen := etcdsrc.NewSeen(nil)
			c.sources = func() report.Sources { return etcdsrc.WatchedPrefixSources(cli, prefixes, seen) }
			return watch(ctx, cli, run, c, stdout, stderr)
		}
		if strings.HasPrefix(run, etcdsrc.URLScheme) {
			eps, name, err := etcdsrc.ParseURL(run)
			if err != nil {
				return bad("%v", err)
			}
			if c.cacert != "" || c.cert != "" || c.key != "" {
				for i, ep := range eps { // TLS files: the URL's endpoints serve https
					eps[i] = "https://" + strings.TrimPrefix(ep, "http://")
				}
			}
			c.endpoints, run = strings.Join(eps, ","), name
		}
		if c.endpoints == "" {
			return bad("no etcd endpoints for run %q: give %sHOST:PORT/%s, or --etcd http://HOST:2379, or set $%s", run, etcdsrc.URLScheme, run, EnvEndpoints)
		}
		if _, err := etcdreg.Prefix(run); err != nil {
			return bad("%v", err)
		}
		cli, err := c.dial(ctx)
		if err != nil {
			return bad("%v", err)
		}
		defer cli.Close()
		if cmd == "attach" {
			return attach(ctx, cli, run, c, stdout, stderr)
		}
		return watch(ctx, cli, run, c, stdout, stderr)
	case "ps", "prune":
		// ps [etcd://HOST:PORT] lists the runs; prune [etcd://HOST:PORT] [RUN...]
		// removes ended ones.
		args := fs.Args()
		if len(args) > 0 && strings.HasPrefix(args[0], etcdsrc.URLScheme) {
			var hosts []string
			for _, h := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(args[0], etcdsrc.URLScheme), "/"), ",") {
				hosts = append(hosts, "http://"+h)
			}
			c.endpoints, args = strings.Join(hosts, ","), args[1:]
		}
		if c.endpoints == "" {
			return bad("%s: no etcd endpoints: give %sHOST:PORT, or --etcd http://HOST:2379, or set $%s", cmd, etcdsrc.URLScheme, EnvEndpoints)
		}
		if cmd == "ps" && len(args) > 0 {
			return bad("ps takes no RUN: lockwatch-etcd ps etcd://HOST:PORT")
		}
		for _, a := range args {
			if _, err := etcdreg.Prefix(a); err != nil {
				return bad("%v", err)
			}
		}
		cli, err := c.dial(ctx)
		if err != nil {
			return bad("%v", err)
		}
		defer cli.Close()
		if cmd == "ps" {
			err = ps(ctx, cli, stdout)
		} else {
			err = prune(ctx, cli, args, stdout)
		}
		if err != nil {
			fmt.Fprintln(stderr, "lockwatch-etcd:", reportcmd.Escape(err.Error()))
			return &ExitError{Code: exitUsage, Err: err}
		}
		return nil
	case "run":
		if fs.NArg() == 0 {
			return bad("run needs a PROGRAM: lockwatch-etcd run -- PROGRAM [ARG...]")
		}
		return run(ctx, fs.Args(), c, stdout, stderr)
	}
	return bad("unknown command %q: use attach, watch, run, ps or prune", cmd)
}

// diagnose reads the run through lockwatch's report: its findings, tables
// and stacks, live ones asked for through etcd.
func (c config) diagnose(ctx context.Context, cli *clientv3.Client, run string) (*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	src := etcdsrc.Sources(cli, run, c.localHost)
	if c.sources != nil {
		src = c.sources()
	}
	return report.Diagnose(ctx, src,
		report.Options{StuckAfter: c.stuckAfter, ProbeTimeout: 2 * time.Second, LiveStacks: c.liveStackOption()})
}

// liveStackOption is --live-stacks as report.Options takes it: 0 there is
// the default, and every process is report.AllLiveStacks.
func (c config) liveStackOption() int {
	if c.liveStacks == 0 {
		return report.AllLiveStacks
	}
	return c.liveStacks
}

// write prints r as lockwatch does (reportcmd.Print): tables, coloured on
// a terminal, JSON (one line per report when compact) or a graph.
func (c config) write(w io.Writer, r *report.Report, compact bool) error {
	return reportcmd.Print(w, r, reportcmd.Format(c.output), compact)
}

// verdict: exit status 3 for a deadlock or a lost lock.
func verdict(r *report.Report) error { return reportcmd.Verdict(r, report.LostLock) }

func attach(ctx context.Context, cli *clientv3.Client, run string, c config, stdout, stderr io.Writer) error {
	r, err := c.diagnose(ctx, cli, run)
	if err != nil {
		fmt.Fprintln(stderr, "lockwatch-etcd:", reportcmd.Escape(err.Error()))
		return &ExitError{Code: exitUsage, Err: err}
	}
	if err := c.write(stdout, r, false); err != nil {
		return &ExitError{Code: exitFailed, Err: err}
	}
	return verdict(r)
}

// watch prints the report whenever its findings change, and says once per
// distinct error when the store cannot be read, then that it can again.
// On SIGINT or SIGTERM it exits as attach would for the last report.
func watch(ctx context.Context, cli *clientv3.Client, run string, c config, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.sources == nil {
		// Read the run once, then only its changes (etcd's watch).
		// Sessions of etcd's own lock on the run's locks are timed from
		// when this watch first saw them.
		if f, err := etcdreg.Follow(ctx, cli, run); err == nil {
			defer f.Close()
			seen := etcdsrc.NewSeen(nil)
			c.sources = func() report.Sources {
				src := etcdsrc.Sources(cli, run, c.localHost)
				src.Locks = []lockstate.Source{etcdsrc.Source{Client: cli, Run: run, LocalHost: c.localHost, Follower: f, Seen: seen}}
				return src
			}
		}
	}
	last, err := reportcmd.Watch{
		Every:    c.interval,
		Diagnose: func(ctx context.Context) (*report.Report, error) { return c.diagnose(ctx, cli, run) },
		Show:     func(r *report.Report) error { return c.write(stdout, r, true) },
		Failed: func(err error) {
			fmt.Fprintf(stderr, "lockwatch-etcd: %s: store unreachable or run unreadable: %s\n", time.Now().Format("15:04:05.000"), reportcmd.Escape(err.Error()))
		},
		Recovered: func() {
			fmt.Fprintf(stderr, "lockwatch-etcd: %s: store reachable again\n", time.Now().Format("15:04:05.000"))
		},
	}.Run(ctx)
	if err != nil {
		return &ExitError{Code: exitFailed, Err: err}
	}
	return verdict(last)
}

// worthReport is what run reports: deadlock findings that block live
// goroutines, and lost locks. The keys tell a new one from one reported.
func worthReport(r *report.Report) (key string, deadlock bool) {
	var b strings.Builder
	for i := range r.Findings {
		f := &r.Findings[i]
		blocking := f.Kind.Deadlock() && (len(f.Waiters) > 0 || len(f.Cycle) > 0)
		if blocking || f.Kind == report.LostLock {
			b.WriteString(f.Key() + "\n")
			deadlock = deadlock || blocking
		}
	}
	return b.String(), deadlock
}

// joinGrace is how long PROGRAM may run before run says it has not joined
// the run: within a second, as lockwatch run says it.
const joinGrace = 750 * time.Millisecond

// run starts the program in a fresh run (and an embedded etcd when no
// endpoints are given), watches it, and prints the report when a deadlock
// or a lost lock is found.
func run(ctx context.Context, argv []string, c config, stdout, stderr io.Writer) error {
	// The program writes to the same writers, from exec's copying
	// goroutines when they are not files.
	stdout, stderr = lockedWriter(stdout), lockedWriter(stderr)
	fail := func(err error) error {
		fmt.Fprintln(stderr, "lockwatch-etcd:", reportcmd.Escape(err.Error()))
		return &ExitError{Code: exitRunFailed, Err: err}
	}
	if c.endpoints == "" {
		dir, err := os.MkdirTemp("", "lockwatch-etcd-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		srv, err := embedded.Start(dir)
		if err != nil {
			return fail(err)
		}
		defer srv.Stop()
		c.endpoints = strings.Join(srv.Endpoints(), ",")
		fmt.Fprintf(stderr, "lockwatch-etcd: started an embedded etcd at %s (data in %s, removed at the end)\n", c.endpoints, dir)
	}
	conn, err := c.conn()
	if err != nil {
		return fail(err)
	}
	cli, err := etcdreg.Dial(ctx, conn)
	if err != nil {
		return fail(err)
	}
	defer cli.Close()
	runName := fmt.Sprintf("run-%s-%d", time.Now().Format("20060102-150405"), os.Getpid())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, reportcmd.Raw(stdout), reportcmd.Raw(stderr) // PROGRAM's own
	cmd.Env = append(append(os.Environ(), conn.Env()...), EnvRun+"="+runName)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		code := exitRunCannotExec
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = exitRunNotFound
		}
		fmt.Fprintln(stderr, "lockwatch-etcd:", reportcmd.Escape(err.Error()))
		return &ExitError{Code: code, Err: err}
	}
	url := etcdsrc.URL(strings.Split(c.endpoints, ","), runName)
	fmt.Fprintf(stderr, "lockwatch-etcd: run %s; attach with: lockwatch attach %s\n", runName, url)
	// PROGRAM is reaped only once nothing signals its process group any
	// more: until then its pid, the group's id, cannot be reused, so the
	// group signalled is the one made here. The goroutine waits for the
	// exit without reaping (WNOWAIT).
	exited := make(chan struct{})
	go func() {
		waitExit(cmd.Process.Pid)
		close(exited)
	}()
	group := -cmd.Process.Pid
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	t := time.NewTicker(c.interval)
	defer t.Stop()
	// Said within a second when PROGRAM has not joined the run.
	joinCheck := time.NewTimer(joinGrace)
	defer joinCheck.Stop()
	joined := false
	reported := ""
	for {
		select {
		case <-joinCheck.C:
			if !joined {
				if _, err := etcdreg.Read(ctx, cli, runName); err == nil {
					joined = true
				} else if !errors.Is(err, etcdreg.ErrUnreachable) {
					fmt.Fprintf(stderr, "lockwatch-etcd: no process has joined the run after %v: %s (pid %d) has not opened it, so none of its locks can be seen and no deadlock can be found; a Go program joins with etcdreg.Open(ctx, cli, os.Getenv(%q), ...) on the endpoints $%s. Still watching: a process that joins later is seen.\n",
						joinGrace, argv[0], cmd.Process.Pid, EnvRun, EnvEndpoints)
				}
			}
			continue
		case <-exited:
			return programStatus(cmd.Wait())
		case sig := <-sigs:
			_ = syscall.Kill(group, sig.(syscall.Signal)) // forwarded; its status passes through
			continue
		case <-ctx.Done():
			_ = syscall.Kill(group, syscall.SIGKILL)
			<-exited
			cmd.Wait()
			return ctx.Err()
		case <-t.C:
		}
		r, err := c.diagnose(ctx, cli, runName)
		if err != nil {
			continue // the program may not have registered yet; etcd may be back soon
		}
		joined = true
		key, deadlock := worthReport(r)
		if key == "" || key == reported {
			continue
		}
		reported = key
		if err := c.report(r, stderr); err != nil {
			return fail(err)
		}
		if !deadlock {
			continue
		}
		if c.onDeadlock == "kill" && !killable(r) {
			fmt.Fprintf(stderr, "lockwatch-etcd: not killed: --on-deadlock=kill acts only on a holder proved dead (by /proc on its host) and on cycles; a stuck holder (a long hold with waiters, as a leader's) or a holder whose lease expired (dead or cut off from etcd) is reported, not killed\n")
			continue
		}
		if c.onDeadlock == "kill" {
			_ = syscall.Kill(group, syscall.SIGKILL)
			<-exited
			cmd.Wait()
			return &ExitError{Code: exitRunDeadlock, Err: errors.New("deadlock")}
		}
		fmt.Fprintf(stderr, "lockwatch-etcd: deadlock found; the program is kept running: attach with lockwatch attach %s, or press Ctrl-C\n", url)
	}
}

// killable reports whether r proves a deadlock that --on-deadlock=kill
// acts on: a cycle, or a holder proved dead on its own host (gone, zombie,
// reused). A lease expiry proves only that the holder is dead or cut off
// from etcd; a stuck holder is a long hold, which a leader does on purpose.
func killable(r *report.Report) bool {
	for i := range r.Findings {
		f := &r.Findings[i]
		switch f.Kind {
		case report.Cycle, report.SelfDeadlock:
			return true
		case report.DeadHolder:
			if f.Holder != nil && (f.Holder.Death == "gone" || f.Holder.Death == "zombie" || f.Holder.Death == "reused") {
				return true
			}
		}
	}
	return false
}

// waitExit returns when the process pid (a child) has exited, without
// reaping it.
func waitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// report writes r on stderr, or into --report.
func (c config) report(r *report.Report, stderr io.Writer) error {
	if c.reportPath == "" {
		return c.write(stderr, r, false)
	}
	f, err := os.Create(c.reportPath)
	if err != nil {
		return err
	}
	if err := c.write(f, r, false); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// programStatus passes the program's own exit status through: 128+N when
// a signal N ended it.
func programStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal()), Err: err}
		}
		return &ExitError{Code: ee.ExitCode(), Err: err}
	}
	if err != nil {
		return &ExitError{Code: exitRunFailed, Err: err}
	}
	return nil
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
