// Command demo is the Go twin of a Python multiprocessing program that
// deadlocks: see docs/tutorial.md, and internal/app/pipeline for how it works.
//
//	demo [--items N] [--workers N] [--payload BYTES] [--fix | --hang]
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockwatch/lockwatch/internal/app/pipeline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := pipeline.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(pipeline.ExitCode(err, os.Stderr))
}
