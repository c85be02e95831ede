package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/procid"
)

const (
	// EnvDir names the run directory a program joins. When it is set, the
	// probe starts by itself in every program that imports this package.
	EnvDir = "LOCKWATCH_DIR"
	// EnvRole names this process's part in the run, e.g. "worker".
	EnvRole = "LOCKWATCH_ROLE"
)

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes, with the terminating NUL).
const maxSocketPath = 107

// Options configure an Agent. The zero value gives the defaults.
type Options struct {
	// Dir is the run directory to join (created, mode 0700, if missing;
	// its parent must exist). Default $LOCKWATCH_DIR, else a fresh run
	// directory under the default root (see the package doc), so that a program started
	// without lockwatch can still be attached to.
	Dir string
	// Role names this process's part in the run; default $LOCKWATCH_ROLE.
	Role string
	// Registry is passed to lockreg.Open. The probe fills in Role (from
	// Role above) and OnStuck (its own hook, see the package doc) unless
	// they are set.
	Registry lockreg.Options
	// Stderr is where the stuck hook and SIGUSR1 write their line; default
	// os.Stderr.
	Stderr io.Writer
	// Signal writes a goroutine profile on SIGUSR1. It is off by default:
	// once a program asks for a signal (os/signal), a thread of it waits
	// for signals for the rest of its life, and Go's runtime then never
	// says "all goroutines are asleep - deadlock!" of it.
	Signal bool
}

// An Agent is the running probe of this process: its registry membership,
// its control socket, its stuck hook and its SIGUSR1 handler. It is safe for
// concurrent use. The zero value is not usable: get one from Start.
type Agent struct {
	dir    string
	made   bool // Start made dir (no LOCKWATCH_DIR): Close removes it if the run ended cleanly
	reg    *lockreg.Registry
	rd     *arena.RunDir // the run directory, opened once after joining
	self   procid.ID
	base   string // arena.ProcessFiles base: dump files and the socket share it
	sock   string
	stderr io.Writer
	uid    int // the only user allowed on the socket

	done chan struct{} // closed by Close: every goroutine of the agent ends
	wg   sync.WaitGroup
	sig  chan os.Signal // nil without Options.Signal
	dump dumper
	// mutexAfter is how long a drop-in mutex's waiter waits before the
	// agent tells of it (watchMutexes).
	mutexAfter time.Duration
	// mutexLooks counts the stuck hook's looks at the drop-in mutexes'
	// waiters (watchMutexes), for tests.
	mutexLooks atomic.Int64
	// selfCheck: the loop looks whether the program is deadlocked, and
	// stands the probe down by itself (loop.go); only outside lockwatch
	// run, whose supervisor asks it (and reports first).
	selfCheck bool
	// blind is said once, when the loop cannot look (blindLooks).
	blind sync.Once
	// ordersSaved is what the orders file holds (saveOrders).
	ordersSaved ordersSaved

	mu     sync.Mutex
	role   string
	conns  map[*os.File]struct{} // open connections, closed by Close
	closed bool
	// ln is the control socket and stop ends the goroutines that serve it
	// (serving); both nil while the agent stands down (standdown.go).
	ln      *listener
	stop    chan struct{}
	servers *sync.WaitGroup     // the goroutines that serve ln
	down    bool                // stood down: no socket, no goroutine, no timer
	rounds  int                 // garbage collections seen since the agent stood down
	told    map[stuckKey]string // the stuck hook's waits told, with their holder's text
}

// The running agent. Start and Close change it; Running reads it.
var (
	runningMu sync.Mutex
	running   *Agent
)

func init() {
	// The probe serves the drop-in's records: kept from now on (inits run before this one locked in the owner mode).
	inproc.WantRecords()
	if os.Getenv(EnvDir) == "" {
		return
	}
	if _, err := Start(Options{}); err != nil {
		// Never stop the program for the probe's sake.
		fmt.Fprintf(os.Stderr, "lockwatch: the probe did not start, so this process cannot be inspected: %v\n", err)
	}
}

// Start starts the probe: it joins the run (see Options.Dir), serves the
// control socket in the run directory, and, with Options.Signal, writes
// a goroutine profile into the run directory on SIGUSR1.
//
// While an agent runs, Start returns it and ignores o, except for o.Role,
// which an agent started without a role (as by the automatic start) takes
// on. After Close, Start starts a new agent.
//
// Start returns an agent and a nil error, or a nil agent and an error: when
// a running agent cannot take on o.Role, the error says so, and that agent
// runs on without a role (Running returns it).
func Start(o Options) (*Agent, error) {
	runningMu.Lock()
	defer runningMu.Unlock()
	if running != nil {
		if o.Role != "" {
			if err := running.adoptRole(o.Role); err != nil {
				return nil, err
			}
		}
		return running, nil
	}
	a, err := start(o, os.Getuid())
	if err != nil {
		return nil, err
	}
	running = a
	return a, nil
}

// Running returns the agent Start started and Close has not closed, or nil.
func Running() *Agent {
	runningMu.Lock()
	defer runningMu.Unlock()
	return running
}

// start builds and starts an agent that answers only the user uid.
func start(o Options, uid int) (*Agent, error) {
	selfCheck := os.Getenv(EnvDir) == "" // outside lockwatch run
	if o.Dir == "" {
		o.Dir = os.Getenv(EnvDir)
	}
	if o.Role == "" {
		o.Role = os.Getenv(EnvRole)
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	made := false
	if o.Dir == "" {
		root, err := arena.DefaultRoot()
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		if root.Fallback != "" {
			fmt.Fprintf(o.Stderr, "lockwatch: pid %d: %s\n", os.Getpid(), root.Fallback)
		}
		if o.Dir, err = arena.NewRunDir(root.Dir); err != nil {
			return nil, fmt.Errorf("probe: making a run directory: %w", err)
		}
		made = true
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("probe: run directory %q: %w", o.Dir, err)
	}
	self := proc.Self()
	a := &Agent{dir: dir, made: made, self: self, sock: probewire.SocketPath(dir, self), stderr: o.Stderr, uid: uid,
		role: o.Role, done: make(chan struct{}), conns: make(map[*os.File]struct{}), selfCheck: selfCheck}
	_, _, a.base = arena.ProcessFiles(dir, self)
	if len(a.sock) > maxSocketPath {
		return nil, fmt.Errorf("probe: the control socket path %q is %d bytes, more than the %d a unix socket allows; use a shorter run directory ($%s)",
			a.sock, len(a.sock), maxSocketPath, EnvDir)
	}

	ro := o.Registry
	if ro.Role == "" {
		ro.Role = o.Role
	}
	if ro.OnStuck == nil {
		ro.OnStuck = a.onStuck
	}
	if a.reg, err = lockreg.Open(dir, ro); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	// The agent's files (dumps, its info file's role, its lock-order
	// edges) are made through a handle of the run directory opened once,
	// right after joining: a directory swapped in later never redirects
	// them.
	if a.rd, err = arena.OpenRunDir(dir); err != nil {
		return nil, errors.Join(fmt.Errorf("probe: %w", err), a.reg.Close())
	}
	a.dump.rd = a.rd
	a.mutexAfter = mutexStuckAfter(ro)
	a.mu.Lock()
	err = a.serving()
	a.mu.Unlock()
	if err != nil {
		return nil, errors.Join(err, a.reg.Close(), a.rd.Close())
	}
	if o.Signal {
		a.sig = make(chan os.Signal, 1)
		signal.Notify(a.sig, syscall.SIGUSR1)
		a.wg.Add(1)
		go a.onSignals()
	}
	return a, nil
}

// Registry returns the agent's membership of the run, for its locks.
func (a *Agent) Registry() *lockreg.Registry { return a.reg }

// Dir returns the run directory.
func (a *Agent) Dir() string { return a.dir }

// SocketPath returns the path of the agent's control socket.
func (a *Agent) SocketPath() string { return a.sock }

// Close stops everything the agent started (the socket, open connections,
// the SIGUSR1 handler), waits for its goroutines, and closes the registry,
// which marks this process as exited cleanly in the run; the same after the
// agent stood down. Locks still held stay held. Close is idempotent; after
// it, Start starts a new agent.
func (a *Agent) Close() error {
	runningMu.Lock()
	if running == a {
		running = nil
	}
	runningMu.Unlock()

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.done)
	err := a.quiet() // also removes the socket file
	if a.down {
		_ = a.rd.Remove(probewire.DownFile(a.base))
	}
	for c := range a.conns {
		_ = c.Close() // wakes a handler blocked in I/O
	}
	a.mu.Unlock()
	if a.sig != nil {
		signal.Stop(a.sig)
	}
	a.wg.Wait()
	err = errors.Join(err, a.reg.Close(), a.rd.Close())
	if a.made {
		// The run this agent made for itself is removed when it ended
		// cleanly (every process closed, no lock held): run directories
		// live in memory (/dev/shm), and such a run holds nothing to
		// diagnose. A run that did not end cleanly stays for lockwatch.
		_, rerr := arena.RemoveIfClean(a.dir)
		err = errors.Join(err, rerr)
	}
	return err
}

func (a *Agent) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// onSignals writes a goroutine profile on each SIGUSR1 until Close.
func (a *Agent) onSignals() {
	defer a.wg.Done()
	for {
		select {
		case <-a.done:
			return
		case <-a.sig:
			path, err := a.dump.profileFile(a.base, "usr1")
			if err != nil {
				fmt.Fprintf(a.stderr, "lockwatch: SIGUSR1: pid %d: writing the goroutine profile: %v\n", a.self.PID, err)
				continue
			}
			fmt.Fprintf(a.stderr, "lockwatch: SIGUSR1: pid %d: goroutine profile in %s\n", a.self.PID, path)
		}
	}
}

// adoptRole gives the agent a role if it has none, and records it in the
// process's info file, where lockwatch reads it.
func (a *Agent) adoptRole(role string) error {
	a.mu.Lock()
	if a.role != "" || a.closed {
		a.mu.Unlock()
		return nil
	}
	a.role = role
	a.mu.Unlock()

	err := a.recordRole(role)
	if err != nil {
		a.mu.Lock()
		a.role = "" // as the info file still says
		a.mu.Unlock()
		return fmt.Errorf("probe: recording role %q: %w", role, err)
	}
	return nil
}

// recordRole writes role into the process's info file.
func (a *Agent) recordRole(role string) error {
	info, err := a.rd.ProcessInfo(a.self)
	if err != nil {
		return err
	}
	info.Role = role
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	path, _, _ := arena.ProcessFiles(a.dir, a.self)
	return replaceFile(a.rd, filepath.Base(path), b)
}

// replaceFile replaces the contents of the file name of the run directory
// rd at once (write, then rename), so that a reader sees the old file or
// the new one.
func replaceFile(rd *arena.RunDir, name string, b []byte) error {
	tmp := name + ".tmp"
	_ = rd.Remove(tmp) // left by a process killed mid-way
	f, err := rd.CreateFile(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Close()); err == nil {
		err = rd.Rename(tmp, name)
	}
	if err != nil {
		_ = rd.Remove(tmp)
	}
	return err
}
