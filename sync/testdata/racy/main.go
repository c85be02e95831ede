// Command racy races, or deadlocks, in the ways a drop-in mutex could hide
// from the race detector or from the runtime's deadlock detection, for
// TestRacesStillReported and TestDeadlockStillDetected. Built with -race,
// with the drop-in and with -tags nolockwatch (sync itself); each way must
// end the same with both.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/lockwatch/lockwatch/sync"
)

var shared int

// pause orders the two goroutines in time without synchronising them: the
// race detector sees no edge in a sleep.
const pause = 50 * time.Millisecond

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: racy first-locks|clock|nested|unrelated|deadlock")
		os.Exit(2)
	}
	done := make(chan bool)
	switch os.Args[1] {
	case "first-locks":
		// Each goroutine's first Lock of a fresh mutex, then the race.
		var a, b sync.Mutex
		go func() { shared = 1; a.Lock(); a.Unlock(); done <- true }()
		go func() { time.Sleep(pause); b.Lock(); b.Unlock(); _ = shared; done <- true }()
	case "clock":
		// One goroutine waits on a mutex (the slow path reads the clock),
		// later another.
		var a, b sync.Mutex
		go func() {
			shared = 1
			a.Lock()
			go func() { time.Sleep(pause / 5); a.Unlock() }()
			a.Lock()
			a.Unlock()
			done <- true
		}()
		go func() {
			time.Sleep(2 * pause)
			b.Lock()
			go func() { time.Sleep(pause / 5); b.Unlock() }()
			b.Lock()
			b.Unlock()
			_ = shared
			done <- true
		}()
	case "nested":
		// Each goroutine takes a new pair of mutexes nested (a lock-order
		// edge recorded), then the race.
		var a, b, c, d sync.Mutex
		var r sync.RWMutex
		go func() {
			shared = 1
			a.Lock()
			b.Lock()
			r.RLock()
			r.RUnlock()
			b.Unlock()
			a.Unlock()
			done <- true
		}()
		go func() {
			time.Sleep(pause)
			c.Lock()
			d.Lock()
			r.RLock()
			r.RUnlock()
			d.Unlock()
			c.Unlock()
			_ = shared
			done <- true
		}()
	case "unrelated":
		// The same mutexes locked by both goroutines, many times, each
		// pair of accesses between unrelated locks.
		var a, b sync.Mutex
		var r sync.RWMutex
		go func() {
			for i := 0; i < 1000; i++ {
				a.Lock()
				a.Unlock()
				r.RLock()
				r.RUnlock()
			}
			shared = 1
			done <- true
		}()
		go func() {
			time.Sleep(pause)
			for i := 0; i < 1000; i++ {
				b.Lock()
				b.Unlock()
				r.RLock()
				r.RUnlock()
			}
			_ = shared
			done <- true
		}()
	case "deadlock":
		// Every goroutine blocks: the runtime must end the program.
		var a sync.Mutex
		var r sync.RWMutex
		r.RLock()
		go func() { a.Lock(); r.Lock() }()
		time.Sleep(pause)
		a.Lock()
		os.Exit(0) // not reached
	default:
		fmt.Fprintf(os.Stderr, "racy: unknown way %q\n", os.Args[1])
		os.Exit(2)
	}
	<-done
	<-done
	fmt.Println("no race reported")
}
