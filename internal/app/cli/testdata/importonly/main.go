// Command importonly is a program whose only change for lockwatch is its
// sync import line (the drop-in; no probe, no lockwatch call). It sets up,
// then blocks for ever (until killed):
//
//   - three goroutines waiting for muHeld, whose holder is blocked
//     receiving from a channel;
//   - an AB/BA deadlock on pair.a and pair.b.
//
// With -exit-after D it exits (status 9) after D, stuck or not: a bound
// for a test that waits for lockwatch to end it. With -leak, a goroutine
// also locks muLeak and exits holding it, and another waits for muLeak; it
// prints "leaked G" (the exited goroutine's id) first.
//
// It prints "ready HOLDER A B" (the goroutine ids of muHeld's holder and
// of the two that lock the pair) once every goroutine has started.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/lockwatch/lockwatch/sync"
)

var (
	muHeld sync.Mutex
	muLeak sync.Mutex
	pair   struct{ a, b sync.Mutex }
	never  = make(chan int)
	ids    = make(chan int64, 3)
)

func holdAndBlock() {
	muHeld.Lock()
	defer muHeld.Unlock()
	ids <- goid()
	<-never
}

func waitLeaked() {
	muLeak.Lock()
	defer muLeak.Unlock()
}

func waitHeld() {
	muHeld.Lock()
	defer muHeld.Unlock()
}

func lockAB(first, second *sync.Mutex, ready *sync.WaitGroup, both chan struct{}) {
	first.Lock()
	defer first.Unlock()
	ids <- goid()
	ready.Done()
	<-both
	second.Lock()
	defer second.Unlock()
}

func main() {
	exitAfter := flag.Duration("exit-after", 0, "exit with status 9 after this long")
	leak := flag.Bool("leak", false, "a goroutine exits holding muLeak, another waits for it")
	flag.Parse()
	if *leak {
		gone := make(chan int64)
		go func() {
			muLeak.Lock()
			gone <- goid()
		}()
		g := <-gone
		go waitLeaked()
		fmt.Println("leaked", g)
	}
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, func() { os.Exit(9) })
	}
	go holdAndBlock()
	holder := <-ids
	for range 3 {
		go waitHeld()
	}
	var ready sync.WaitGroup
	ready.Add(2)
	both := make(chan struct{})
	go lockAB(&pair.a, &pair.b, &ready, both)
	a := <-ids
	go lockAB(&pair.b, &pair.a, &ready, both)
	b := <-ids
	ready.Wait()
	close(both)
	fmt.Println("ready", holder, a, b)
	for {
		time.Sleep(time.Hour) // a timer: the runtime does not call this a deadlock
	}
}

// goid is the calling goroutine's id, from its stack's header line.
func goid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(bytes.TrimPrefix(buf, []byte("goroutine ")))
	id, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return id
}
