// Command ownerrace is a target of goproc's tests of the drop-in sync's
// owner word. It holds the drop-in Mutex mu in its main goroutine while
// another goroutine waits for it, and says "ready" once that goroutine is
// parked in mu.Lock (its own traceback shows so). A line "release" on its
// stdin unlocks mu: the waiter takes it, says "took" and keeps it, parked
// on a channel. With -self, a goroutine locks mu twice instead (a real
// self-deadlock) and "release" does nothing. With -n N, N goroutines wait
// for mu held by main (with -std, for a sync.Mutex instead: the peer of
// the benchmark of reading drop-in waiters) and "release" does nothing.
// It ends when its stdin does.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

var (
	mu    lwsync.Mutex
	stdmu sync.Mutex
)

func main() {
	self := flag.Bool("self", false, "a goroutine locks mu twice")
	n := flag.Int("n", 0, "this many goroutines wait for mu")
	std := flag.Bool("std", false, "with -n: they wait for a sync.Mutex instead")
	flag.Parse()
	took := make(chan struct{})
	fixed := *self || *n > 0
	switch {
	case *n > 0:
		mu.Lock()
		stdmu.Lock()
		for range *n {
			go func() {
				if *std {
					stdmu.Lock()
				} else {
					mu.Lock()
				}
			}()
		}
	case *self:
		go func() {
			mu.Lock()
			mu.Lock()
		}()
	default:
		mu.Lock()
		go func() {
			mu.Lock()
			close(took)
			select {} // holds mu for good
		}()
	}
	waitParked(max(*n, 1))
	fmt.Println("ready")
	// Reading stdin keeps the program alive (a goroutine in a system
	// call) until the test closes it.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "release" && !fixed {
			mu.Unlock()
			<-took
			fmt.Println("took")
		}
	}
}

// waitParked returns once n goroutines are parked in a Mutex's Lock.
func waitParked(n int) {
	buf := make([]byte, 1<<16+n*4096)
	for {
		k := runtime.Stack(buf, true)
		if strings.Count(string(buf[:k]), "[sync.Mutex.Lock") >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
