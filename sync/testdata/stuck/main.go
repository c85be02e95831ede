// Command stuck deadlocks on drop-in mutexes in the way its argument names,
// and waits to be diagnosed (lockwatch attach PID) until killed. It prints
// its pid, then "stuck" once the deadlock is in place.
//
//	go build -trimpath -o /tmp/stuck ./sync/testdata/stuck && /tmp/stuck holder
//
// Ways: holder (a goroutine holds queue.buf while blocked writing to a full
// pipe; two wait for it), cycle (two goroutines take a and b in opposite
// orders), self (a goroutine locks a Mutex it holds), rwtrap (a goroutine
// read-locks an RWMutex it read-holds while a writer waits).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

// Queue is a buffer flushed to a pipe under its mutex.
type Queue struct {
	mu  sync.Mutex
	buf []byte
	w   *os.File
}

// flush writes the buffer holding the mutex: with nobody reading the pipe
// it blocks in write(2), holding it.
func (q *Queue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.w.Write(q.buf)
}

// put appends under the mutex.
func (q *Queue) put(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.buf = append(q.buf, b...)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stuck holder|cycle|self|rwtrap")
		os.Exit(2)
	}
	agent, err := probe.Start(probe.Options{Role: "stuck-" + os.Args[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer agent.Close()
	fmt.Println(os.Getpid())
	waiting := func(n int) {
		// Until n goroutines wait (their records are written before they
		// block).
		c := probe.Client{Path: agent.SocketPath()}
		for {
			v, err := c.Mutexes(context.Background())
			if err == nil {
				w := 0
				for _, m := range v.Mutexes {
					w += len(m.Waiters)
				}
				if w >= n {
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}
	switch os.Args[1] {
	case "holder":
		r, w, _ := os.Pipe()
		defer r.Close()
		q := &Queue{w: w, buf: make([]byte, 1<<20)} // more than a pipe holds
		sync.SetName(&q.mu, "queue.buf")
		go q.flush()
		for q.mu.TryLock() {
			q.mu.Unlock()
		}
		for i := 0; i < 2; i++ {
			go q.put([]byte("x"))
		}
		waiting(2)
	case "cycle":
		var a, b sync.Mutex
		sync.SetName(&a, "accounts")
		sync.SetName(&b, "ledger")
		var both sync.WaitGroup
		both.Add(2)
		go transfer(&a, &b, &both)
		go transfer(&b, &a, &both)
		waiting(2)
	case "self":
		var mu sync.Mutex
		sync.SetName(&mu, "cache")
		go refresh(&mu)
		waiting(1)
	case "rwtrap":
		var rw sync.RWMutex
		sync.SetName(&rw, "config")
		held := make(chan bool)
		go readTwice(&rw, held)
		<-held
		go rw.Lock() // a writer arrives between the two reads
		waiting(1)
		held <- true
		waiting(2)
	default:
		fmt.Fprintln(os.Stderr, "usage: stuck holder|cycle|self|rwtrap")
		os.Exit(2)
	}
	fmt.Println("stuck")
	select {}
}

// transfer takes from, then to: two transfers in opposite directions take
// them in opposite orders.
func transfer(from, to *sync.Mutex, both *sync.WaitGroup) {
	from.Lock()
	defer from.Unlock()
	both.Done()
	both.Wait()
	to.Lock()
	defer to.Unlock()
}

// refresh locks the cache, then calls a helper that locks it again.
func refresh(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
	reload(mu)
}

func reload(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
}

// readTwice read-locks rw, and again in a helper, after held says a writer
// may come.
func readTwice(rw *sync.RWMutex, held chan bool) {
	rw.RLock()
	defer rw.RUnlock()
	held <- true
	<-held
	lookup(rw)
}

func lookup(rw *sync.RWMutex) {
	rw.RLock()
	defer rw.RUnlock()
}
