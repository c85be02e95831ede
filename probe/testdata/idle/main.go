// Command idle starts lockwatch's probe itself (probe.Start), prints "ready
// SOCKET", and then waits for ever, every goroutine blocked but one that
// something outside the program wakes, the way its argument says:
//
//	sleep      a goroutine sleeps (time.Sleep)
//	ticker     a goroutine wakes every millisecond (time.Ticker), or
//	           every DURATION of a second argument
//	timerchan  a goroutine waits on a timer's channel (time.After)
//	afterfunc  a time.AfterFunc is pending; no goroutine waits on it
//	deadline   a goroutine waits for a context's deadline
//	accept     a goroutine waits in a net.Listener's Accept
//	signal     a goroutine waits for a signal (os/signal)
//	pipe       a goroutine reads a pipe in a blocking read(2)
//
// It prints each look of the probe at the program ("look awake: WHY" or
// "look asleep"), for the test to count.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/deadcheck"
	"github.com/lockwatch/lockwatch/probe"
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
	a, err := probe.Start(probe.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	const long = time.Hour
	switch os.Args[1] {
	case "sleep":
		go time.Sleep(long)
	case "ticker":
		every := time.Millisecond
		if len(os.Args) > 2 {
			every, _ = time.ParseDuration(os.Args[2])
		}
		go func() {
			for range time.Tick(every) {
			}
		}()
	case "timerchan":
		go func() { <-time.After(long) }()
	case "afterfunc":
		time.AfterFunc(long, func() {})
	case "deadline":
		ctx, cancel := context.WithTimeout(context.Background(), long)
		defer cancel()
		go func() { <-ctx.Done() }()
	case "accept":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		go func() { _, _ = ln.Accept() }()
	case "signal":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGUSR2)
		go func() { <-c }()
	case "pipe":
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil { // blocking descriptors
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		go func() {
			var b [1]byte
			_, _ = syscall.Read(p[0], b[:])
		}()
	default:
		fmt.Fprintf(os.Stderr, "idle: unknown mode %q\n", os.Args[1])
		os.Exit(3)
	}
	fmt.Println("ready", a.SocketPath())
	<-make(chan struct{})
}
