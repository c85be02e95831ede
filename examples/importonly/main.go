package main

import (
	"fmt"
	"os"
	"time"

	"github.com/lockwatch/lockwatch/sync"
)

func main() {
	var a, b sync.Mutex
	go func() { a.Lock(); time.Sleep(50 * time.Millisecond); b.Lock() }()
	go func() { b.Lock(); time.Sleep(50 * time.Millisecond); a.Lock() }()
	fmt.Println("pid", os.Getpid())
	time.Sleep(time.Hour)
}
