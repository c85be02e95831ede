// Package pgcli is the lockwatch-pg command: lockwatch's attach and watch
// for the lock waits of a PostgreSQL server. It diagnoses and renders
// through lockwatch's own report (report, fed by pgsrc), so its
// findings, tables and JSON are lockwatch's. `lockwatch attach
// postgres://...` runs it.
//
//	err := pgcli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
package pgcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/postgres/pgsrc"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/report/gostacks"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// Exit statuses, as lockwatch's attach and watch.
const (
	exitFailed = reportcmd.ExitFailed
	exitUsage  = reportcmd.ExitUsage
)

// ExitError carries the status to exit with; its message was printed.
type ExitError = reportcmd.ExitError

const usage = `usage: lockwatch-pg COMMAND [flags] [CONNSTRING]

  attach [flags] [CONNSTRING]   one report on the server's lock waits
  watch  [flags] [CONNSTRING]   the report, printed again on each change

CONNSTRING is a PostgreSQL URL (postgres://USER@HOST:PORT/DB?sslmode=...)
or libpq's key=value form; what it leaves out comes from libpq's
environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE,
PGPASSFILE, PGSERVICE...), as psql does. lockwatch itself runs these
commands: lockwatch attach postgres://...

Flags: -o table|json|dot, --stuck-after DURATION (a session holding a lock
others wait for is stuck after holding it this long while they wait as
long; default 10s), --interval DURATION (watch), --terminate-dead (end
with pg_terminate_backend each session whose client is proved gone while
it holds a lock: its end of the connection closed on this machine; the
proof is checked again just before, and one line says what was done),
--server-log PATH (attach: the server's log on this machine, read for the
deadlocks PostgreSQL broke itself; without it, the log pg_current_logfile()
names is read through the server when the role may).

The role needs pg_read_all_stats (or superuser) to see other roles'
sessions' state, client and query; without it the report says what is
missing.

Exit status: 0 nothing found, 1 failed, 2 usage, or the server cannot be
reached or refuses, 3 a deadlock was found (a dead holder, a cycle, a
stuck holder).
`

type config struct {
	output        string
	stuckAfter    time.Duration
	interval      time.Duration
	terminateDead bool
	serverLog     string
}

// Main runs lockwatch-pg with args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return &ExitError{Code: exitUsage, Err: errors.New("no command")}
		}
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("lockwatch-pg "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.output, "o", "table", "output `format`: table, json, or dot (the wait-for graph for Graphviz)")
	fs.DurationVar(&c.stuckAfter, "stuck-after", 10*time.Second, "a holder with waiters is stuck after holding this `long`")
	fs.DurationVar(&c.interval, "interval", 500*time.Millisecond, "watch: how often to read the server")
	fs.BoolVar(&c.terminateDead, "terminate-dead", false, "end, with pg_terminate_backend, the sessions whose client is proved gone while they hold a lock")
	fs.StringVar(&c.serverLog, "server-log", "", "attach: the server's log `file` on this machine, read for the deadlocks PostgreSQL broke (default: the file pg_current_logfile() names, read through the server)")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bad := func(format string, a ...any) error {
		return reportcmd.Refuse(stderr, "lockwatch-pg", exitUsage, fmt.Errorf(format, a...))
	}
	if help, err := reportcmd.ParseFlags(fs, args[1:], exitUsage); help || err != nil {
		return err
	}
	if _, err := reportcmd.ParseFormat(c.output); err != nil {
		return bad("%v", err)
	}
	if c.stuckAfter <= 0 {
		return bad("--stuck-after %s: want a positive duration", c.stuckAfter)
	}
	if cmd != "attach" && cmd != "watch" {
		return bad("unknown command %q: use attach or watch", cmd)
	}
	if fs.NArg() > 1 {
		return bad("%s takes at most one connection string (postgres://USER@HOST:PORT/DB); got %d arguments", cmd, fs.NArg())
	}
	conn, server, err := connect(ctx, fs.Arg(0))
	if err != nil {
		return bad("%v", err)
	}
	defer conn.Close(context.Background())
	src := pgsrc.New(conn, server)
	if a, ok := conn.PgConn().Conn().RemoteAddr().(*net.TCPAddr); ok {
		src.ServerAddr = a.AddrPort()
	}
	if cmd == "attach" {
		return attach(ctx, src, c, stdout, stderr)
	}
	return watch(ctx, src, c, stdout, stderr)
}

// connectWithin bounds connecting; readWithin bounds each statement.
const (
	connectWithin = 10 * time.Second
	readWithin    = 10 * time.Second
)

// connect opens a session on the server named by connString and libpq's
// environment, and names the server for the report.
func connect(ctx context.Context, connString string) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, "", fmt.Errorf("connection string: %w: give postgres://USER@HOST:PORT/DB, or set PGHOST, PGPORT, PGUSER and PGDATABASE", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "lockwatch"
	}
	// The statements lockwatch runs read catalog views; none may run long.
	cfg.RuntimeParams["statement_timeout"] = strconv.Itoa(int(readWithin / time.Millisecond))
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectWithin {
		cfg.ConnectTimeout = connectWithin
	}
	server := serverName(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("cannot connect to %s as %q: %w; check the connection string (or PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)", server, cfg.User, err)
	}
	return conn, server, nil
}

// serverName is "postgres 127.0.0.1:5432/app", or the socket's path.
func serverName(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = fmt.Sprintf("%s/.s.PGSQL.%d", strings.TrimSuffix(host, "/"), cfg.Port)
	} else {
		host = fmt.Sprintf("%s:%d", host, cfg.Port)
	}
	return fmt.Sprintf("postgres %s database %s", host, cfg.Database)
}

func (c config) diagnose(ctx context.Context, src *pgsrc.Source) (*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*readWithin)
	defer cancel()
	r, err := report.Diagnose(ctx, src.Sources(), report.Options{StuckAfter: c.stuckAfter})
	if err != nil {
		return nil, err
	}
	src.Explain(r)
	return r, nil
}

// clientGoroutines adds to the report the goroutines of the sessions' Go
// clients on this machine, read from their memory: for each session that
// waits, its client's goroutines inside the PostgreSQL driver (the chain
// from the goroutine to the session, and from it to the lock); for a stuck
// holder or one in a cycle, its client's blocked goroutines, summed up in
// what the finding says it does.
func clientGoroutines(ctx context.Context, src *pgsrc.Source, r *report.Report) {
	g := gostacks.New()
	defer g.Close()
	why := func(p report.Party) string { return "client of session " + pgsrc.Host + "/" + strconv.Itoa(p.PID) }
	waiter := func(p report.Party, lock string) {
		if p.Host != pgsrc.Host || !p.Alive {
			return
		}
		for _, c := range src.ClientsOf(p.PID) {
			g.Add(ctx, r, gostacks.Party{PID: c.PID, Start: c.Start, Lock: lock, Role: "waiter", Why: why(p)}, gostacks.InDriver)
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.LockKind != pgsrc.Kind {
			continue
		}
		for _, w := range f.Waiters {
			waiter(w, f.Lock)
		}
		for _, st := range f.Cycle {
			waiter(st.Party, st.WaitsFor)
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		h := f.Holder
		if f.LockKind != pgsrc.Kind || h == nil || h.Host != pgsrc.Host || !h.Alive || (f.Kind != report.StuckHolder && f.Kind != report.Cycle) {
			continue
		}
		for _, c := range src.ClientsOf(h.PID) {
			if g.Add(ctx, r, gostacks.Party{PID: c.PID, Start: c.Start, Lock: f.Lock, Role: "holder", Why: why(*h)}, gostacks.Blocked) && f.Kind == report.StuckHolder {
				if s := g.Summary(c.PID); s != "" {
					f.Doing = strings.TrimPrefix(f.Doing+"; its client, pid "+strconv.Itoa(c.PID)+", is a Go program: "+s, "; ")
				}
			}
		}
	}
	g.Notes(r)
}

func (c config) write(w io.Writer, r *report.Report, compact bool) error {
	return reportcmd.Print(w, r, reportcmd.Format(c.output), compact)
}

func verdict(r *report.Report) error { return reportcmd.Verdict(r) }

// terminate ends the dead holders' sessions, with --terminate-dead, and
// says so on stderr, one line each.
func (c config) terminate(ctx context.Context, src *pgsrc.Source, r *report.Report, stderr io.Writer) {
	if !c.terminateDead {
		return
	}
	for _, line := range src.Terminate(ctx, r) {
		fmt.Fprintln(stderr, reportcmd.Escape(line))
	}
}

func attach(ctx context.Context, src *pgsrc.Source, c config, stdout, stderr io.Writer) error {
	r, err := c.diagnose(ctx, src)
	if err != nil {
		fmt.Fprintln(stderr, "lockwatch-pg: cannot read the lock graph:", reportcmd.Escape(err.Error()))
		return &ExitError{Code: exitUsage, Err: err}
	}
	// The deadlocks PostgreSQL broke itself, from its log: after the lock
	// graph's round trip, once.
	logCtx, cancel := context.WithTimeout(ctx, readWithin)
	r.Notes = append(r.Notes, src.ServerLog(logCtx, c.serverLog)...)
	cancel()
	clientGoroutines(ctx, src, r)
	if err := c.write(stdout, r, false); err != nil {
		return &ExitError{Code: exitFailed, Err: err}
	}
	c.terminate(ctx, src, r, stderr)
	return verdict(r)
}

// watch prints the report whenever its findings change, and says once per
// distinct error when the server cannot be read. On SIGINT or SIGTERM it
// exits as attach would for the last report.
func watch(ctx context.Context, src *pgsrc.Source, c config, stdout, stderr io.Writer) error {
	last, err := reportcmd.Watch{
		Every:    c.interval,
		Diagnose: func(ctx context.Context) (*report.Report, error) { return c.diagnose(ctx, src) },
		Show: func(r *report.Report) error {
			clientGoroutines(ctx, src, r)
			if err := c.write(stdout, r, true); err != nil {
				return err
			}
			c.terminate(ctx, src, r, stderr)
			return nil
		},
		Failed: func(err error) {
			fmt.Fprintf(stderr, "lockwatch-pg: %s: cannot read the lock graph: %s\n", time.Now().Format("15:04:05.000"), reportcmd.Escape(err.Error()))
		},
	}.Run(ctx)
	if err != nil {
		return &ExitError{Code: exitFailed, Err: err}
	}
	return verdict(last)
}
