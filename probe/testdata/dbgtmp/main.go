package main

import (
	"fmt"
	"os"

	"github.com/lockwatch/lockwatch/internal/rt/deadcheck"
	"github.com/lockwatch/lockwatch/probe"
)

func main() {
	f := func(l deadcheck.Look) { fmt.Fprintf(os.Stderr, "look %+v\n", l) }
	deadcheck.Watch.Store(&f)
	a, err := probe.Start(probe.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println("ready", a.SocketPath())
	<-make(chan struct{})
}
