// Command lockwatch-etcd is lockwatch for runs whose locks live in etcd:
// attach, watch and run (see docs/distributed.md). lockwatch itself runs it
// for `lockwatch attach etcd://HOST:PORT/RUN` and `lockwatch run --etcd`.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
	"github.com/lockwatch/lockwatch/internal/diag/safeout"
)

func main() {
	// Every byte goes through the terminal writer (internal/diag/safeout), as
	// lockwatch's own: what a run holds never drives the terminal.
	stdout, stderr := safeout.NewWriter(os.Stdout), safeout.NewWriter(os.Stderr)
	err := etcdcli.Main(context.Background(), os.Args[1:], stdout, stderr)
	stdout.Flush()
	stderr.Flush()
	var ee *etcdcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		os.Exit(1)
	}
}
