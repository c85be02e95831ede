// Command goroutines is a Go program with many goroutines, for the tests of
// lockwatch ps's memory: -n goroutines, half blocked on one sync.Mutex, half
// on a channel. It says "ready" once it has started them (they may not all
// be blocked yet), and exits when its standard input closes.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
)

func main() {
	n := flag.Int("n", 100_000, "goroutines to start")
	flag.Parse()
	var mu sync.Mutex
	mu.Lock()
	c := make(chan int)
	for i := range *n {
		if i%2 == 0 {
			go func() { mu.Lock() }()
		} else {
			go func() { <-c }()
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
