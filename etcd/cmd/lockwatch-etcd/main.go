// Command lockwatch-etcd is lockwatch for runs whose locks live in etcd:
// attach, watch and run (see docs/distributed.md). lockwatch itself runs it
// for `lockwatch attach etcd://HOST:PORT/RUN` and `lockwatch run --etcd`.
package main

import (
	"context"
	"io"
	"os"

	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
	"github.com/lockwatch/lockwatch/reportcmd"
)

func main() {
	// Every byte goes through the terminal writer (reportcmd.Main), as
	// lockwatch's own: what a run holds never drives the terminal.
	reportcmd.Main(func(ctx context.Context, stdout, stderr io.Writer) error {
		return etcdcli.Main(ctx, os.Args[1:], stdout, stderr)
	})
}
