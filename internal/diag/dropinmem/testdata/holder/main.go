// Command holder holds a drop-in mutex, with a goroutine waiting for it,
// until its stdin closes: a program that changed only its sync import
// line (no probe), for TestViewFromOutside. It prints "ready GOID LINE",
// its goroutine id and the line of its Lock.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/sync"
)

func main() {
	var mu sync.Mutex
	mu.Lock()
	_, _, line, _ := runtime.Caller(0)
	go func() {
		mu.Lock() // waits
		mu.Unlock()
	}()
	time.Sleep(100 * time.Millisecond) // (the test reads the waiter until it is there)
	fmt.Printf("ready %d %d\n", record.ParseGoid(), line-1)
	_, _ = os.Stdin.Read(make([]byte, 1))
	mu.Unlock()
}
