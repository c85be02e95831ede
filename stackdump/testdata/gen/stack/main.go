// Command stack prints runtime.Stack(buf, true) to stdout, as the probe
// takes it: no gp= or m= fields, no runtime frames.
// stackdump's tests run it with -update and GODEBUG=tracebacklabels=1 (so
// pprof labels show in the headers) to make testdata/stack.txt.
package main

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

func wait(ch chan struct{}) { <-ch }

func condWait(c *sync.Cond) {
	c.L.Lock()
	c.Wait()
}

func main() {
	ch := make(chan struct{})
	c := sync.NewCond(new(sync.Mutex))
	var wg sync.WaitGroup
	for range 3 {
		go wait(ch) // three goroutines with one stack, for grouping
	}
	pprof.Do(context.Background(), pprof.Labels("role", "writer", "queue", "jobs"), func(context.Context) {
		go wait(ch)
	})
	go condWait(c)
	wg.Add(1)
	go wg.Wait()

	buf := make([]byte, 1<<20)
	for range 1000 {
		n := runtime.Stack(buf, true)
		if strings.Count(string(buf[:n]), "[chan receive") == 4 &&
			strings.Contains(string(buf[:n]), "[sync.Cond.Wait]") &&
			strings.Contains(string(buf[:n]), "[sync.WaitGroup.Wait]") {
			os.Stdout.Write(buf[:n])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	panic("goroutines did not block")
}
