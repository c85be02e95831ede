package probe

import (
	"fmt"
	"runtime"
)

// Go's runtime ends a program whose goroutines are all blocked ("all
// goroutines are asleep - deadlock!", exit status 2) only when nothing could
// wake one: no timer pending, no goroutine waiting in its network poller, no
// thread in a system call. The probe's socket waits in the poller and its
// looks at the drop-in mutexes run on tickers, so while it serves the
// runtime never ends such a program. lockwatch run, which reads its
// processes' goroutines from their memory, asks the probe of a process
// whose every goroutine but the probe's is blocked to stand down
// (probewire.OpStandDown): the probe closes its socket and ends its
// goroutines and tickers, and the runtime then sees the program as it would
// without a probe. A program that was truly blocked dies at once, with the
// runtime's own message and status; one that a timer was about to wake
// (lockwatch cannot see a time.AfterFunc or a context's deadline) goes on,
// and its probe serves again once two garbage collections have run since it
// stood down (the runtime forces one every 2 minutes in a program that runs
// at all): a program truly blocked runs none, since its runtime ends it
// first.

// returnAfterGCs is how many garbage collections a stood-down probe waits
// for before it serves again. One may already be under way when the probe
// stands down (its end runs the cleanup of an object made before), so one
// proves nothing; a second has to start after the first one's cleanup ran,
// which a blocked program never does.
const returnAfterGCs = 2

// serving opens the control socket and starts the goroutines that serve
// it: the accept loop, the look at the drop-in mutexes' waiters, the keeper
// of the lock-order edges. a.mu is held.
func (a *Agent) serving() error {
	ln, err := listenUnix(a.sock)
	if err != nil {
		return fmt.Errorf("probe: control socket: %w", err)
	}
	stop := make(chan struct{})
	a.ln, a.stop, a.down = ln, stop, false
	a.wg.Add(3)
	go a.serve(ln, stop)
	go a.watchMutexes(a.mutexAfter, stop)
	go a.keepOrders(stop)
	return nil
}

// quiet closes the control socket (removing its file) and ends the
// goroutines that serve it; connections being answered end when answered.
// a.mu is held.
func (a *Agent) quiet() error {
	if a.ln == nil {
		return nil
	}
	close(a.stop)
	err := a.ln.Close()
	a.ln, a.stop = nil, nil
	return err
}

// standDown stops serving until the program is seen to run on (collected).
// The registry stays open: the process stays a member of its run, and the
// locks it holds stay held.
func (a *Agent) standDown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.down {
		return
	}
	if err := a.quiet(); err != nil {
		fmt.Fprintf(a.stderr, "lockwatch: pid %d: standing the probe down: %v\n", a.self.PID, err)
	}
	a.down, a.rounds = true, 0
	a.watchGC()
}

// sentinel is an object made only to be collected: its cleanup says that a
// garbage collection ran.
type sentinel struct{ _ *byte }

// watchGC arranges for collected to run after the next garbage collection.
func (a *Agent) watchGC() {
	runtime.AddCleanup(&sentinel{}, (*Agent).collected, a)
}

// collected runs after a garbage collection while the agent stands down;
// after returnAfterGCs of them the program has run on, and the agent
// serves again.
func (a *Agent) collected() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || !a.down {
		return
	}
	a.rounds++
	if a.rounds < returnAfterGCs {
		a.watchGC()
		return
	}
	if err := a.serving(); err != nil {
		// Said once; the agent stays down (Close still closes it).
		fmt.Fprintf(a.stderr, "lockwatch: pid %d: the program went on after its probe stood down, but the probe cannot serve again: %v\n", a.self.PID, err)
		return
	}
	fmt.Fprintf(a.stderr, "lockwatch: pid %d: the program went on after its probe stood down (a timer woke it); the probe serves again\n", a.self.PID)
}
