// Command stuck deadlocks on drop-in mutexes in the way its argument names,
// and waits to be diagnosed (lockwatch attach PID) until killed. It prints
// its pid, then "stuck" once the deadlock is in place. Like a stuck server,
// it still waits for a signal (SIGHUP, which it ignores), so Go's runtime
// does not end it.
//
//	go build -trimpath -o /tmp/stuck ./examples/stuck && /tmp/stuck holder
//
// Ways: holder (a goroutine holds queue.buf while blocked writing to a full
// pipe; two wait for it), cycle (two goroutines take accounts and ledger in
// opposite orders), self (a goroutine locks a Mutex it holds), rwtrap (a
// goroutine read-locks an RWMutex it read-holds while a writer waits), chain
// (a goroutine holds queue.buf while it waits for the cross-process lock
// queue.wlock, whose holder, a child process, was killed holding it; two
// wait for queue.buf).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
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

// A sharedLock is a cross-process lock: *lockreg.Mutex, from the probe's
// registry.
type sharedLock interface {
	Lock(ctx context.Context) error
	Unlock() error
}

// flushShared writes the buffer to a pipe that other processes write too,
// under their shared lock; it holds the buffer's mutex all the while, so
// that while it waits for the shared lock, every put waits for it.
func (q *Queue) flushShared(wlock sharedLock) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := wlock.Lock(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer wlock.Unlock()
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
		fmt.Fprintln(os.Stderr, "usage: stuck holder|cycle|self|rwtrap|chain")
		os.Exit(2)
	}
	if os.Args[1] == "chain-holder" {
		os.Exit(holdShared())
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
		c := probeclient.Client{Path: agent.SocketPath()}
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
	case "chain":
		// A child process of the same run takes queue.wlock and is
		// killed holding it.
		pid, err := killedHolder(agent.Dir())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "stuck: pid %d was killed holding queue.wlock\n", pid)
		wlock, err := agent.Registry().Mutex("queue.wlock")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		r, w, _ := os.Pipe()
		defer r.Close()
		q := &Queue{w: w, buf: []byte("x")}
		sync.SetName(&q.mu, "queue.buf")
		go q.flushShared(wlock)
		for q.mu.TryLock() {
			q.mu.Unlock()
		}
		for i := 0; i < 2; i++ {
			go q.put([]byte("x"))
		}
		waiting(2)
		for { // until flushShared waits for queue.wlock
			s, err := arena.ReadSnapshot(agent.Dir())
			if err == nil && len(s.Waiters) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: stuck holder|cycle|self|rwtrap|chain")
		os.Exit(2)
	}
	fmt.Println("stuck")
	// A server stuck so still answers the world outside (a listener, a
	// signal handler): a thread waits for it. This one waits for SIGHUP.
	// Without it every goroutine would be blocked, and Go's runtime would
	// end the program at once ("all goroutines are asleep - deadlock!"),
	// its probe standing down so that it can, before anyone attaches.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
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

// killedHolder starts this program again as "chain-holder" in the run dir,
// waits until it holds queue.wlock, kills it (SIGKILL) and reaps it. It
// returns the child's pid.
func killedHolder(dir string) (int, error) {
	cmd := exec.Command(os.Args[0], "chain-holder")
	cmd.Env = append(os.Environ(), probe.EnvDir+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "held\n" {
		return 0, fmt.Errorf("chain-holder said %q (%v); want held", line, err)
	}
	return cmd.Process.Pid, nil
}

// holdShared is the child of chain: it joins the run ($LOCKWATCH_DIR),
// takes queue.wlock, says "held" and waits to be killed.
func holdShared() int {
	agent, err := probe.Start(probe.Options{Role: "stuck-chain-holder"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	wlock, err := agent.Registry().Mutex("queue.wlock")
	if err == nil {
		err = wlock.Lock(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("held")
	select {}
}
