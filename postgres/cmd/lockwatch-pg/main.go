// Command lockwatch-pg is lockwatch for the lock waits of a PostgreSQL
// server: attach and watch (see docs/postgres.md). lockwatch itself runs it
// for `lockwatch attach postgres://...`, so that lockwatch does not link a
// PostgreSQL driver.
package main

import (
	"context"
	"io"
	"os"

	"github.com/lockwatch/lockwatch/postgres/internal/pgcli"
	"github.com/lockwatch/lockwatch/reportcmd"
)

func main() {
	// Every byte goes through the terminal writer (reportcmd.Main), as
	// lockwatch's own: what a session holds never drives the terminal.
	reportcmd.Main(func(ctx context.Context, stdout, stderr io.Writer) error {
		return pgcli.Main(ctx, os.Args[1:], stdout, stderr)
	})
}
