// Command target is a program built with the standard sync only, that the
// tests and benchmarks of goroutine readers attach to. It sets up, then
// blocks for ever (until killed):
//
//   - three goroutines waiting for muHeld, whose holder (defer Unlock) is
//     blocked receiving from a channel;
//   - an AB/BA deadlock on pair.a and pair.b;
//   - an RWMutex read-held (defer RUnlock) by a goroutine blocked on a
//     channel, a writer queued in Lock behind it and two readers queued
//     behind the writer;
//   - with -n N, N more goroutines blocked on a channel;
//   - with -chans, a goroutine blocked sending on one channel, one
//     receiving from another, and one in a select on two more (one case
//     a send, one a receive, and a nil channel's case), each channel's
//     address printed before "ready" as "chan send 0x...", "chan receive
//     0x...", "select 0x... 0x..."; the holder of muHeld waits on the
//     channel printed as "never 0x...";
//   - with -gc D, a garbage collection every D (so that the runtime notes
//     how long its goroutines have waited);
//   - with -nondumpable, it makes itself non-dumpable;
//   - with -exec-on-usr1 PROGRAM, it execs "PROGRAM 3600" on SIGUSR1;
//   - with -heartbeat D, a goroutine that wakes every D and reports, on
//     stderr when the process gets SIGUSR2, the longest gap it saw beyond D
//     (how long the program was kept from running), and on SIGUSR1 takes
//     the runtime's traceback of every goroutine (runtime.Stack), saying
//     "dumped N" on stderr.
//
// It prints "ready" on stdout once the runtime's own traceback shows every
// goroutine it set up parked where it should be, main's in its sleep (the
// goroutine that checks and prints then parks for good, in main.announce).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

var (
	muHeld sync.Mutex
	pair   struct{ a, b sync.Mutex }
	rw     sync.RWMutex
	never  = make(chan int)
)

func holdAndBlock() {
	muHeld.Lock()
	defer muHeld.Unlock()
	<-never
}

func waitHeld() {
	muHeld.Lock()
	defer muHeld.Unlock()
}

func lockAB(first, second *sync.Mutex, ready *sync.WaitGroup, both chan struct{}) {
	first.Lock()
	defer first.Unlock()
	ready.Done()
	<-both
	second.Lock()
	defer second.Unlock()
}

func readAndBlock(held chan<- struct{}) {
	rw.RLock()
	defer rw.RUnlock()
	held <- struct{}{}
	<-never
}

func write() {
	rw.Lock()
	defer rw.Unlock()
}

func read() {
	rw.RLock()
	defer rw.RUnlock()
}

func idle(c chan int) { <-c }

// blockOnChans starts the goroutines of -chans and prints their channels.
func blockOnChans() {
	send, recv, s1, s2 := make(chan int), make(chan string), make(chan struct{}), make(chan []byte, 1)
	s2 <- nil // full: a send blocks
	var nilChan chan int
	go func() { send <- 1 }()
	go func() { <-recv }()
	go func() {
		select {
		case <-s1:
		case s2 <- nil:
		case <-nilChan:
		}
	}()
	fmt.Printf("never %p\nchan send %p\nchan receive %p\nselect %p %p\n", never, send, recv, s1, s2)
}

func main() {
	n := flag.Int("n", 0, "more goroutines blocked on a channel")
	hb := flag.Duration("heartbeat", 0, "measure scheduling gaps with this period")
	nondumpable := flag.Bool("nondumpable", false, "prctl(PR_SET_DUMPABLE, 0): only root may read its memory")
	gc := flag.Duration("gc", 0, "run a garbage collection this often (the runtime then notes how long goroutines wait)")
	execOn := flag.String("exec-on-usr1", "", "on SIGUSR1, exec this program with the argument 3600 (sleep(1) for an hour)")
	chans := flag.Bool("chans", false, "goroutines blocked in a send, a receive and a select, their channels printed")
	flag.Parse()

	if *execOn != "" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		go func() {
			<-sig
			err := syscall.Exec(*execOn, []string{*execOn, "3600"}, nil)
			fmt.Fprintln(os.Stderr, "exec:", err)
			os.Exit(1)
		}()
	}

	if *gc > 0 {
		go func() {
			for {
				time.Sleep(*gc)
				runtime.GC()
			}
		}()
	}

	if *nondumpable {
		const prSetDumpable = 4
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
			fmt.Fprintln(os.Stderr, "prctl:", errno)
			os.Exit(1)
		}
	}

	if *hb > 0 {
		heartbeat(*hb)
	}
	go holdAndBlock()
	for muHeld.TryLock() { // until the holder has it
		muHeld.Unlock()
		time.Sleep(time.Millisecond)
	}
	for range 3 {
		go waitHeld()
	}

	var ready sync.WaitGroup
	ready.Add(2)
	both := make(chan struct{})
	go lockAB(&pair.a, &pair.b, &ready, both)
	go lockAB(&pair.b, &pair.a, &ready, both)
	ready.Wait()
	close(both)

	held := make(chan struct{})
	go readAndBlock(held)
	<-held
	go write()
	for !rwWriterWaiting() {
		time.Sleep(time.Millisecond)
	}
	go read()
	go read()

	if *chans {
		blockOnChans()
	}
	c := make(chan int)
	for range *n {
		go idle(c)
	}
	go announce(*n, *chans)
	for {
		time.Sleep(time.Hour) // a timer: the runtime does not call this a deadlock
	}
}

// parked is n goroutines in function fn, parked in state.
type parked struct {
	fn, state string
	n         int
}

// announce prints "ready" once the runtime's own traceback shows every
// goroutine main set up parked where it should be, main's own in its
// sleep: from then on none of them runs, so a reader sees each where a
// later traceback (SIGQUIT) does. announce itself parks for good right
// after: a reader may see it on its way there.
func announce(n int, chans bool) {
	want := []parked{
		{"main.main()", "[sleep", 1},
		{"main.holdAndBlock()", "[chan receive", 1},
		{"main.waitHeld()", "[sync.Mutex.Lock", 3},
		{"main.lockAB(", "[sync.Mutex.Lock", 2},
		{"main.readAndBlock(", "[chan receive", 1},
		{"main.write()", "[sync.RWMutex.Lock", 1},
		{"main.read()", "[sync.RWMutex.RLock", 2},
		{"main.idle(", "[chan receive", n},
	}
	if chans {
		want = append(want, parked{"main.blockOnChans.func1()", "[chan send", 1},
			parked{"main.blockOnChans.func2()", "[chan receive", 1}, parked{"main.blockOnChans.func3()", "[select", 1})
	}
	buf := make([]byte, 64<<10+n*512)
	for {
		m := runtime.Stack(buf, true)
		if m == len(buf) {
			buf = make([]byte, 2*len(buf)) // cut: read it whole
			continue
		}
		count := make([]int, len(want))
		for _, g := range bytes.Split(buf[:m], []byte("\n\n")) {
			for i, w := range want {
				// A parked goroutine's innermost frame of main is its
				// function: "goroutine 7 [chan receive]:\n...\nmain.idle(...".
				if bytes.Contains(g, []byte("\n"+w.fn)) && bytes.Contains(g, []byte(w.state)) {
					count[i]++
				}
			}
		}
		ok := true
		for i, w := range want {
			ok = ok && count[i] == w.n
		}
		if ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("ready")
	<-make(chan struct{}) // parked for good (tests leave it out: it was running when it said ready)
}

// rwWriterWaiting reports whether a writer has announced itself on rw: a
// new reader would block.
func rwWriterWaiting() bool {
	if rw.TryRLock() {
		rw.RUnlock()
		return false
	}
	return true
}

func heartbeat(period time.Duration) {
	var mu sync.Mutex
	var worst time.Duration
	go func() {
		last := time.Now()
		for {
			time.Sleep(period)
			now := time.Now()
			mu.Lock()
			worst = max(worst, now.Sub(last)-period)
			mu.Unlock()
			last = now
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	go func() {
		for range sig {
			mu.Lock()
			fmt.Fprintf(os.Stderr, "worst-gap-ns %d\n", worst.Nanoseconds())
			worst = 0
			mu.Unlock()
		}
	}()
	// SIGUSR1: the runtime's own traceback of every goroutine, which stops
	// the world for the whole dump as SIGQUIT's does (SIGQUIT then ends the
	// process, before the heartbeat could say how long it was stopped).
	dump := make(chan os.Signal, 1)
	signal.Notify(dump, syscall.SIGUSR1)
	go func() {
		buf := make([]byte, 64<<20)
		for range dump {
			n := runtime.Stack(buf, true)
			fmt.Fprintf(os.Stderr, "dumped %d\n", n)
		}
	}()
}
