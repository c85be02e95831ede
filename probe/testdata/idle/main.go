// Command idle starts lockwatch's probe itself (probe.Start), prints "ready
// SOCKET", and then runs for ever, every goroutine blocked but one that
// something outside the program wakes, the way its argument says (PERIOD,
// a second argument, defaults to 250ms):
//
//	sleep      a goroutine sleeps for PERIOD, again and again (time.Sleep)
//	afterfunc  a time.AfterFunc runs every PERIOD, each arming the next;
//	           no goroutine waits for it
//	deadline   a goroutine waits for a context's deadline, PERIOD away,
//	           again and again
//	ticker     a goroutine wakes every PERIOD (time.Ticker)
//	timerchan  a goroutine waits on a timer's channel an hour away
//	pipe       a goroutine reads a pipe in the runtime's poller (os.Pipe)
//	accept     a goroutine waits in a unix socket's Accept
//	syscall    a goroutine reads a pipe in a blocking read(2)
//	signal     a goroutine waits for a signal (os/signal)
//
// Not one of them is deadlocked: Go's runtime never ends them, with sync or
// with the probe. It prints each look of the probe at the program ("look
// awake: WHY" or "look asleep ..."), for the test to count.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
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
		fail(err)
	}
	period := 250 * time.Millisecond
	if len(os.Args) > 2 {
		if period, err = time.ParseDuration(os.Args[2]); err != nil {
			fail(err)
		}
	}
	switch os.Args[1] {
	case "sleep":
		go func() {
			for {
				time.Sleep(period)
			}
		}()
	case "afterfunc":
		var arm func()
		arm = func() { time.AfterFunc(period, arm) }
		arm()
	case "deadline":
		go func() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), period)
				<-ctx.Done()
				cancel()
			}
		}()
	case "ticker":
		go func() {
			for range time.Tick(period) {
			}
		}()
	case "timerchan":
		go func() { <-time.After(time.Hour) }()
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			fail(err)
		}
		go func() {
			var b [1]byte
			_, _ = r.Read(b[:])
			// The write end stays open: collected, it would be closed,
			// the read would end, and the program would be deadlocked.
			runtime.KeepAlive(w)
		}()
	case "accept":
		ln, err := net.Listen("unix", filepath.Join(filepath.Dir(a.SocketPath()), "idle.sock"))
		if err != nil {
			fail(err)
		}
		go func() { _, _ = ln.Accept() }()
	case "syscall":
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil { // blocking descriptors
			fail(err)
		}
		go func() {
			var b [1]byte
			_, _ = syscall.Read(p[0], b[:])
		}()
	case "signal":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGUSR2)
		go func() { <-c }()
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
	fmt.Println("ready", a.SocketPath())
	<-make(chan struct{})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "idle:", err)
	os.Exit(3)
}
