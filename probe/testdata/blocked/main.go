// Command blocked starts lockwatch's probe itself (probe.Start, as a program
// run outside lockwatch run does), prints "ready SOCKET", and blocks every
// goroutine it has for ever, the way its argument says (it prints each look
// of the probe at it, as testdata/idle does):
//
//	chan      main waits on a channel nobody sends on (the default)
//	select    main waits in an empty select
//	sync      main locks a sync.Mutex it holds
//	dropin    two goroutines lock two drop-in mutexes in opposite orders
//	stuck     as dropin, with the probe's Registry.StuckAfter 300 ms (its
//	          look at the drop-in waiters ticks every 75 ms)
//	threads   200 goroutines, each locked to a thread of its own, and main
//	          wait on a channel nobody sends on
package main

import (
	"fmt"
	"os"
	"runtime"
	gosync "sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/deadcheck"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

func main() {
	watch := func(l deadcheck.Look) {
		if l.Asleep {
			fmt.Println("look asleep, runs", l.Runs, l.Sig)
		} else {
			fmt.Println("look awake:", l.Why)
		}
	}
	deadcheck.Watch.Store(&watch)
	mode := "chan"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	var o probe.Options
	if mode == "stuck" {
		o.Registry.StuckAfter = 300 * time.Millisecond
	}
	a, err := probe.Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println("ready", a.SocketPath())
	switch mode {
	case "chan":
		<-make(chan struct{})
	case "select":
		select {}
	case "sync":
		var mu gosync.Mutex
		mu.Lock()
		mu.Lock()
	case "dropin", "stuck":
		var first, second sync.Mutex
		first.Lock()
		holds := make(chan struct{})
		go func() {
			second.Lock()
			close(holds)
			first.Lock()
		}()
		<-holds
		second.Lock()
	case "threads":
		never := make(chan struct{})
		for range 200 {
			go func() {
				runtime.LockOSThread()
				<-never
			}()
		}
		<-never
	default:
		fmt.Fprintf(os.Stderr, "blocked: unknown mode %q\n", mode)
		os.Exit(3)
	}
}
