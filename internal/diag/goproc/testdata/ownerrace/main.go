// Command ownerrace is a target of goproc's tests of the drop-in sync's
// owner word. It holds the drop-in Mutex mu in its main goroutine while
// another goroutine waits for it, and says "ready" once that goroutine is
// parked in mu.Lock (its own traceback shows so). A line "release" on its
// stdin unlocks mu: the waiter takes it, says "took" and keeps it, parked
// on a channel. With -self, a goroutine locks mu twice instead (a real
// self-deadlock) and "release" does nothing. It ends when its stdin does.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

var mu lwsync.Mutex

func main() {
	self := flag.Bool("self", false, "a goroutine locks mu twice")
	flag.Parse()
	took := make(chan struct{})
	if *self {
		go func() {
			mu.Lock()
			mu.Lock()
		}()
	} else {
		mu.Lock()
		go func() {
			mu.Lock()
			close(took)
			select {} // holds mu for good
		}()
	}
	waitParked()
	fmt.Println("ready")
	// Reading stdin keeps the program alive (a goroutine in a system
	// call) until the test closes it.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "release" && !*self {
			mu.Unlock()
			<-took
			fmt.Println("took")
		}
	}
}

// waitParked returns once a goroutine is parked in mu.Lock.
func waitParked() {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if strings.Contains(string(buf[:n]), "[sync.Mutex.Lock") {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
