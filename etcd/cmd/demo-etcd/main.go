// Command demo-etcd is the demo pipeline with its lock in etcd: run with
// --backend etcd, it deadlocks as bin/demo --hang does (see
// docs/distributed.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockwatch/lockwatch/etcd/internal/etcddemo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := etcddemo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee *etcddemo.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-etcd:", err)
		os.Exit(1)
	}
}
