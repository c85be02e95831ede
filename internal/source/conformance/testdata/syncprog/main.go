// Command syncprog is a program with the standard sync only, read from its
// memory by the conformance suite's harness of goprocsrc. It builds one
// scenario, named by its argument, prints "ready" once every goroutine of
// it has started, and then runs a garbage collection every few
// milliseconds (so that the runtime notes when each goroutine began to
// wait) until it is killed:
//
//	cycle        g1 holds mutexA, g2 mutexB; each waits for the other's
//	cycle-kinds  g1 holds mutexA, g2 rwB (written); each waits for the other's
//	stuck        g1 holds mutexA, blocked on a channel; g2 waits for mutexA
//	readers      g1 and g2 read-hold rwB, blocked on a channel; g3 waits to write
//	self         g1 holds mutexA and locks it again
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var (
	mutexA, mutexB sync.Mutex
	rwB            sync.RWMutex
	never          = make(chan struct{})
)

// Each lock is taken with its unlock deferred in the same function: the
// pending deferred unlock is the evidence the reader names a holder by.

// holdA holds mutexA, says so, and blocks.
func holdA(held chan<- struct{}) {
	mutexA.Lock()
	defer mutexA.Unlock()
	held <- struct{}{}
	<-never
}

// readB read-holds rwB, says so, and blocks.
func readB(held chan<- struct{}) {
	rwB.RLock()
	defer rwB.RUnlock()
	held <- struct{}{}
	<-never
}

// waitA waits for mutexA.
func waitA() {
	mutexA.Lock()
	defer mutexA.Unlock()
}

// writeB waits to write rwB.
func writeB() {
	rwB.Lock()
	defer rwB.Unlock()
}

// aThenB holds mutexA, says so, and on goOn takes mutexB.
func aThenB(held chan<- struct{}, goOn <-chan struct{}) {
	mutexA.Lock()
	defer mutexA.Unlock()
	held <- struct{}{}
	<-goOn
	mutexB.Lock()
	defer mutexB.Unlock()
}

// bThenA holds mutexB, says so, and on goOn takes mutexA.
func bThenA(held chan<- struct{}, goOn <-chan struct{}) {
	mutexB.Lock()
	defer mutexB.Unlock()
	held <- struct{}{}
	<-goOn
	mutexA.Lock()
	defer mutexA.Unlock()
}

// aThenRW holds mutexA, says so, and on goOn writes rwB.
func aThenRW(held chan<- struct{}, goOn <-chan struct{}) {
	mutexA.Lock()
	defer mutexA.Unlock()
	held <- struct{}{}
	<-goOn
	rwB.Lock()
	defer rwB.Unlock()
}

// rwThenA writes rwB, says so, and on goOn takes mutexA.
func rwThenA(held chan<- struct{}, goOn <-chan struct{}) {
	rwB.Lock()
	defer rwB.Unlock()
	held <- struct{}{}
	<-goOn
	mutexA.Lock()
	defer mutexA.Unlock()
}

// self holds mutexA, says so, and locks it again.
func self(held chan<- struct{}) {
	mutexA.Lock()
	defer mutexA.Unlock()
	held <- struct{}{}
	mutexA.Lock()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: syncprog cycle|cycle-kinds|stuck|readers|self")
		os.Exit(2)
	}
	held := make(chan struct{})
	goOn := make(chan struct{})
	switch os.Args[1] {
	case "cycle":
		go aThenB(held, goOn)
		go bThenA(held, goOn)
		<-held
		<-held
		close(goOn)
	case "cycle-kinds":
		go aThenRW(held, goOn)
		go rwThenA(held, goOn)
		<-held
		<-held
		close(goOn)
	case "stuck":
		go holdA(held)
		<-held
		go waitA()
	case "readers":
		go readB(held)
		go readB(held)
		<-held
		<-held
		go writeB()
	case "self":
		go self(held)
		<-held
	default:
		fmt.Fprintf(os.Stderr, "syncprog: unknown scenario %q; want cycle, cycle-kinds, stuck, readers or self\n", os.Args[1])
		os.Exit(2)
	}
	fmt.Println("ready")
	for {
		time.Sleep(5 * time.Millisecond)
		runtime.GC()
	}
}
