// Command lockwatch-etcd is lockwatch for runs whose locks live in etcd:
// attach, watch and run (see docs/distributed.md).
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	err := etcdcli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee *etcdcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		os.Exit(1)
	}
}
