// Command lockwatch-etcd is lockwatch for runs whose locks live in etcd:
// attach, watch and run (see docs/distributed.md). lockwatch itself runs it
// for `lockwatch attach etcd://HOST:PORT/RUN` and `lockwatch run --etcd`.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

func main() {
	err := etcdcli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var ee *etcdcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		os.Exit(1)
	}
}
