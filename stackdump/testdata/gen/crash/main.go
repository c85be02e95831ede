// Command crash dereferences nil with GOTRACEBACK=crash while another
// goroutine spins on another thread: the dump has a SIGSEGV preamble,
// runtime frames, register dumps and "goroutine running on other thread;
// stack unavailable". The runtime then aborts (SIGABRT; no core file unless
// ulimit -c allows it). stackdump's tests run it with -update to make
// testdata/crash.txt.
package main

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

type node struct{ next *node }

var spins atomic.Int64

func spin() {
	for {
		spins.Add(1)
	}
}

func (n *node) last() *node {
	for n.next != nil {
		n = n.next
	}
	return n
}

func main() {
	debug.SetTraceback("crash")
	go spin()
	for spins.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var n *node
	n.last()
}
