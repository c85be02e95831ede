// Command asleep is a program with lockwatch's probe whose goroutines block
// in one of several ways, for the tests of Go's own deadlock detection under
// lockwatch run (-mode):
//
//   - mutex: main locks a drop-in mutex twice (as with sync, a deadlock
//     the runtime ends: "all goroutines are asleep - deadlock!", status 2);
//   - chan: main and a goroutine wait for each other on channels (the
//     same);
//   - sleep, timer, pipe: main sleeps, waits on a time.After channel, or
//     reads a pipe a child process writes to, for -for; then it says
//     "probe serving" (or "probe gone") and exits 0: never a deadlock;
//   - afterfunc: main waits on a channel that a time.AfterFunc closes once
//     the probe has stood down, looked at every -for (every goroutine
//     blocked, but a timer pending: lockwatch cannot tell, the runtime does
//     not end it); then it collects garbage until its probe serves again,
//     and says "probe back".
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

func main() {
	mode := flag.String("mode", "mutex", "mutex, chan, sleep, timer, pipe or afterfunc")
	wait := flag.Duration("for", time.Second, "how long sleep, timer, pipe and afterfunc wait")
	flag.Parse()
	a := probe.Running()
	if a == nil {
		fmt.Fprintln(os.Stderr, "asleep: no probe (run it under lockwatch run)")
		os.Exit(3)
	}
	fmt.Println("asleep: started")
	switch *mode {
	case "mutex":
		var mu sync.Mutex
		sync.SetName(&mu, "asleep.mu")
		mu.Lock()
		mu.Lock()
	case "chan":
		ping, pong := make(chan int), make(chan int)
		go func() { <-ping; pong <- 1 }()
		<-pong
		ping <- 1
	case "sleep":
		time.Sleep(*wait)
	case "timer":
		<-time.After(*wait)
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			panic(err)
		}
		cmd := exec.Command("sh", "-c", fmt.Sprintf("sleep %f; echo x", wait.Seconds()))
		cmd.Stdout = w
		if err := cmd.Start(); err != nil {
			panic(err)
		}
		w.Close()
		b := make([]byte, 2)
		if _, err := r.Read(b); err != nil {
			panic(err)
		}
		cmd.Wait()
	case "afterfunc":
		// A timer that no goroutine waits on wakes the program once its
		// probe has stood down (looked at every -for), however long that
		// takes.
		done := make(chan struct{})
		var look func()
		look = func() {
			if serving(a) {
				time.AfterFunc(*wait, look)
				return
			}
			close(done)
		}
		time.AfterFunc(*wait, look)
		<-done
		for !serving(a) {
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("asleep: probe back")
		return
	default:
		fmt.Fprintf(os.Stderr, "asleep: -mode=%q: want mutex, chan, sleep, timer, pipe or afterfunc\n", *mode)
		os.Exit(3)
	}
	if serving(a) {
		fmt.Println("asleep: probe serving")
	} else {
		fmt.Println("asleep: probe gone")
	}
}

// serving reports whether the probe's socket is there.
func serving(a *probe.Agent) bool {
	_, err := os.Stat(a.SocketPath())
	return err == nil
}
