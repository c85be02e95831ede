package probe

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/lockwatch/lockwatch/internal/rt/probewire"
)

// Go's runtime ends a program whose goroutines are all blocked ("all
// goroutines are asleep - deadlock!", exit status 2) only when nothing could
// wake one: no timer pending, no goroutine waiting in its network poller, no
// thread in a system call. The probe's loop waits in a system call of its
// own (loop.go), so while it serves the runtime never ends such a program.
// The probe stands down (closes its socket and ends its goroutines) when
// the loop's looks agree that nothing but the probe could wake the program
// (only in a probe started outside lockwatch run), or when lockwatch run,
// which reads its processes' goroutines from their memory, asks it to
// (probewire.OpStandDown): the runtime then judges the program as it would
// without a probe. A program that was truly blocked dies at once, with the
// runtime's own message and status; the probe says nothing first, since
// only the runtime proves the deadlock. A program that goes on (the looks
// cannot see everything: a timer of the processor the loop held, lockwatch
// run a time.AfterFunc) gets its probe back after its next garbage
// collection: the probe forces one as it stands down, and serves again
// after the one after it (returnAfterGCs), which a program truly blocked
// never runs, since its runtime ends it first. The runtime forces a
// collection every 2 minutes in a program that runs at all, unless garbage
// collection is off (GOGC=off): then the loop does not stand the probe
// down (deadcheck.GCOff), and only lockwatch run does.

// returnAfterGCs is how many garbage collections a stood-down probe waits
// for before it serves again, the one it forces as it stands down
// included (settleDown). One may already be under way when the probe
// stands down (its end runs the cleanup of an object made before), so one
// proves nothing; a second has to start after the first one's cleanup ran,
// which a blocked program never does.
const returnAfterGCs = 2

// serving opens the control socket and starts the goroutines that serve
// it: the loop (loop.go), the look at the drop-in mutexes' waiters, the
// keeper of the lock-order edges. a.mu is held.
func (a *Agent) serving() error {
	ln, err := listenUnix(a.sock)
	if err != nil {
		return fmt.Errorf("probe: control socket: %w", err)
	}
	stop := make(chan struct{})
	mutexTick, ordersTick := make(chan struct{}, 1), make(chan struct{}, 1)
	servers := new(sync.WaitGroup)
	a.ln, a.stop, a.servers, a.down = ln, stop, servers, false
	a.wg.Add(3)
	servers.Add(3)
	go func() {
		defer a.wg.Done()
		down := a.loop(ln, stop, mutexTick, ordersTick)
		servers.Done()
		if down {
			servers.Wait()
			a.settleDown()
		}
	}()
	go func() {
		defer servers.Done()
		a.watchMutexes(a.mutexAfter, stop, mutexTick)
	}()
	go func() {
		defer servers.Done()
		a.keepOrders(stop, ordersTick)
	}()
	return nil
}

// quiet removes the control socket's file and ends the goroutines that
// serve it (the loop closes the socket as it ends); connections being
// answered end when answered. a.mu is held.
func (a *Agent) quiet() error {
	if a.ln == nil {
		return nil
	}
	close(a.stop)
	a.ln.wake()
	err := a.ln.remove()
	a.ln, a.stop = nil, nil
	return err
}

// standDown stops serving until the program is seen to run on (collected),
// as lockwatch run asks. The registry stays open: the process stays a
// member of its run, and the locks it holds stay held.
func (a *Agent) standDown() {
	a.mu.Lock()
	ok := a.standDownLocked()
	servers := a.servers
	a.mu.Unlock()
	if ok {
		servers.Wait()
		a.settleDown()
	}
}

// standDownLocked is standDown with a.mu held, up to the end of the
// goroutines that serve; false if the agent was closed or down already.
func (a *Agent) standDownLocked() bool {
	if a.closed || a.down {
		return false
	}
	// The edges go on file before the socket goes: an attach that finds
	// no socket reads them there. A failure is said by keepOrders' own
	// save at its stop, which tries again.
	_ = a.saveOrders()
	if err := a.quiet(); err != nil {
		fmt.Fprintf(a.stderr, "lockwatch: pid %d: standing the probe down: %v\n", a.self.PID, err)
	}
	a.down, a.rounds = true, 0
	// The mark that says why the socket is gone (lockwatch attach reads
	// the program from its memory meanwhile).
	if f, err := a.rd.CreateFile(probewire.DownFile(a.base)); err == nil {
		_ = f.Close()
	}
	return true
}

// standDownBlocked stands the probe down, once the loop serving with stop
// found the program asleep, unless it was closed or stood down meanwhile
// (false). It says nothing: if the program is deadlocked, the runtime says
// so at once.
func (a *Agent) standDownBlocked(stop chan struct{}) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stop != stop {
		return false
	}
	return a.standDownLocked()
}

// settleDown, once the goroutines that served have ended, arranges for the
// agent to serve again after returnAfterGCs garbage collections, and forces
// the first: a live program then needs only its next one.
func (a *Agent) settleDown() {
	a.mu.Lock()
	if a.closed || !a.down {
		a.mu.Unlock()
		return
	}
	a.watchGC()
	a.mu.Unlock()
	runtime.GC()
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
	_ = a.rd.Remove(probewire.DownFile(a.base))
	if err := a.serving(); err != nil {
		// Said once; the agent stays down (Close still closes it).
		fmt.Fprintf(a.stderr, "lockwatch: pid %d: the program went on after its probe stood down, but the probe cannot serve again: %v\n", a.self.PID, err)
		return
	}
	fmt.Fprintf(a.stderr, "lockwatch: pid %d: the program went on after its probe stood down; the probe serves again\n", a.self.PID)
}
