// Command lockwatch-pg is lockwatch for the lock waits of a PostgreSQL
// server: attach and watch (see docs/postgres.md). lockwatch itself runs it
// for `lockwatch attach postgres://...`, so that lockwatch does not link a
// PostgreSQL driver.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/lockwatch/lockwatch/postgres/internal/pgcli"
)

func main() {
	err := pgcli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var ee *pgcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		os.Exit(1)
	}
}
