// Command restart is one life of a restarting worker for the churn of the
// reliability suite (internal/app/stress): it joins the run named by its
// argument, takes and releases a lock, and exits; with -die it exits
// without closing its registry, as a killed worker would. It imports only
// lockreg, so that it starts in about a millisecond.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/lockwatch/lockwatch/lockreg"
)

func main() {
	die := flag.Bool("die", false, "exit without closing the registry")
	flag.Parse()
	if err := life(flag.Arg(0), *die); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
}

func life(dir string, die bool) error {
	r, err := lockreg.Open(dir, lockreg.Options{Role: "restart"})
	if err != nil {
		return err
	}
	m, err := r.Mutex("churn")
	if err != nil {
		return err
	}
	if err := m.Lock(context.Background()); err != nil {
		return err
	}
	if err := m.Unlock(); err != nil {
		return err
	}
	if die {
		return nil
	}
	return r.Close()
}
