package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// PostgreSQL servers are read by lockwatch-pg, a command of its own module
// (postgres/), so that lockwatch itself never links a PostgreSQL driver
// (docs/postgres.md). lockwatch runs it, as for etcd runs, for
//
//	lockwatch attach postgres://USER@HOST:PORT/DB
//	lockwatch watch  postgresql://...
//	lockwatch attach postgres://        (all of it from PGHOST, PGPORT, PGUSER...)
//
// It is looked for beside lockwatch's own executable, then on PATH; its
// exit status is lockwatch's.

// pgTool is the executable that reads PostgreSQL servers.
const pgTool = "lockwatch-pg"

// isPostgres reports whether a target names a PostgreSQL server.
func isPostgres(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

const pgHelp = `

A PostgreSQL server's lock waits (advisory locks, rows, tables,
transactions) are read from postgres://USER@HOST:PORT/DB (what the URL
leaves out comes from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, as
for psql); lockwatch runs lockwatch-pg for it (beside lockwatch, or on
PATH; build it with 'make build-pg'). --terminate-dead ends, with
pg_terminate_backend, each session whose client is proved gone while it
holds a lock; attach --server-log FILE reads the server's log on this
machine for the deadlocks PostgreSQL broke itself (without it, the log is
read through the server when the role may).`

// postgresCommands lets attach and watch take PostgreSQL servers, by
// handing them to lockwatch-pg.
func (a *app) postgresCommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() != "attach" && c.Name() != "watch" {
			continue
		}
		var terminate bool
		var serverLog string
		c.Flags().BoolVar(&terminate, "terminate-dead", false, "PostgreSQL servers: end (pg_terminate_backend) each session whose client is proved gone while it holds a lock")
		if c.Name() == "attach" {
			c.Flags().StringVar(&serverLog, "server-log", "", "PostgreSQL servers: the server's log `file` on this machine, read for the deadlocks PostgreSQL broke itself")
		}
		c.Long += pgHelp
		c.Example += fmt.Sprintf("\n  lockwatch %s postgres://app@127.0.0.1:5432/app   # a PostgreSQL server's lock waits", c.Name())
		own := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if !isPostgres(args[0]) {
				if terminate {
					return usagef("%s--terminate-dead is for PostgreSQL servers (postgres://...); drop it", cmdPrefix(cmd))
				}
				if serverLog != "" {
					return usagef("%s--server-log is for PostgreSQL servers (postgres://...); drop it", cmdPrefix(cmd))
				}
				return own(cmd, args)
			}
			fwd := []string{cmd.Name(), "-o", a.output, "--stuck-after", a.opts.StuckAfter.String()}
			var err error
			cmd.Flags().Visit(func(f *pflag.Flag) {
				switch f.Name {
				case "output", "stuck-after":
				case "interval", "terminate-dead", "server-log":
					fwd = append(fwd, "--"+f.Name+"="+f.Value.String())
				default:
					if err == nil {
						err = usagef("%s--%s does not apply to PostgreSQL servers; see '%s --help'", cmdPrefix(cmd), f.Name, cmd.CommandPath())
					}
				}
			})
			if err != nil {
				return err
			}
			path, err := findTool(pgTool, "PostgreSQL servers", "a PostgreSQL driver", "make build-pg", "cd postgres && go install ./cmd/"+pgTool)
			if err != nil {
				return err
			}
			return a.execTool(path, append(fwd, args[0]))
		}
	}
}
