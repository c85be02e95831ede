// Command sigquit blocks goroutines in the common ways and sends itself
// SIGQUIT, so that the runtime prints its dump to stderr and exits with
// status 2. stackdump's tests run it with -update to make
// testdata/sigquit.txt.
package main

import (
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

type server struct{ mu sync.Mutex }

// lock blocks in sync.Mutex.Lock: main holds s.mu.
func (s *server) lock() { s.mu.Lock() }

type queue[T any] struct{ ch chan T }

// get blocks in chan receive, in a generic method.
func (q *queue[T]) get() T { return <-q.ch }

func recv(ch chan int, n int, s string) int { return <-ch + n + len(s) }

func selectTwo(a, b chan int) {
	select {
	case <-a:
	case <-b:
	}
}

// deep recurses past the runtime's 100-frame limit, so the dump elides
// frames.
func deep(n int, ch chan int) int {
	if n == 0 {
		return <-ch
	}
	return deep(n-1, ch) + 1
}

func locked(ch chan int) {
	runtime.LockOSThread()
	<-ch
}

func main() {
	block := make(chan int)
	s := &server{}
	s.mu.Lock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	q := &queue[string]{ch: make(chan string)}
	go recv(block, 42, "hello")
	go selectTwo(block, block)
	go s.lock()
	go time.Sleep(time.Hour)
	go ln.Accept() // IO wait
	go locked(block)
	go deep(150, block)
	go q.get()

	want := []string{"[chan receive]", "[select]", "[sync.Mutex.Lock]", "[sleep]", "[IO wait]", "[chan receive, locked to thread]"}
	waitFor(want)
	syscall.Kill(os.Getpid(), syscall.SIGQUIT)
	time.Sleep(time.Minute) // the runtime exits on SIGQUIT
}

// waitFor returns once every goroutine has reached its blocking state.
func waitFor(states []string) {
	buf := make([]byte, 1<<20)
	for range 1000 {
		dump := string(buf[:runtime.Stack(buf, true)])
		ok := true
		for _, s := range states {
			ok = ok && strings.Contains(dump, s)
		}
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	panic("goroutines did not block")
}
