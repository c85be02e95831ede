// Command ancestors starts goroutines from goroutines and panics in the
// innermost. stackdump's tests run it with -update and
// GODEBUG=tracebackancestors=5 to make testdata/ancestors.txt, whose
// goroutines show "[originating from goroutine N]:" stacks.
package main

import (
	"runtime/debug"
	"time"
)

func level(n int, done chan struct{}) {
	if n == 0 {
		time.Sleep(100 * time.Millisecond) // let the others block
		panic("innermost")
	}
	go level(n-1, done)
	<-done
}

func main() {
	debug.SetTraceback("all")
	done := make(chan struct{})
	go level(3, done)
	<-done
}
