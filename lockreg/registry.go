package lockreg

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/clock"
	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Policy says what a waiter does when the holder of a lock died holding it.
type Policy int

const (
	// PolicyDefault takes the registry's policy (for a Registry: Stall).
	PolicyDefault Policy = iota
	// Stall keeps waiting, as an unrecoverable semaphore would, so that the
	// deadlock stays visible; the death is recorded in the event ring and
	// reported to the stuck hook and to lockwatch.
	Stall
	// Recover takes the lock and returns ErrOwnerDead, so that the caller
	// can repair what the lock protected.
	Recover
)

func (p Policy) String() string {
	switch p {
	case Stall:
		return "stall"
	case Recover:
		return "recover"
	}
	return "default"
}

// Options configure a Registry. The zero value gives the defaults.
type Options struct {
	// Capacities of the arena, used only by the process that creates it.
	// Defaults: 1024 processes, 4096 locks, 4096 waiters, 65536 events.
	// MaxEvents is the budget of event slots for all locks: each lock keeps
	// its own last MaxEvents/MaxLocks events (rounded down to a power of
	// two, at least 4 and at most 1024), half for the holders' events and
	// half for the waiters'.
	MaxProcs, MaxLocks, MaxWaiters, MaxEvents int

	// NoRecord turns off the holder record and the acquire and release
	// events: an acquire then costs one CAS. The lock word still names the
	// holder's pid, and waiters are still recorded.
	NoRecord bool

	// Policy for a dead holder; default Stall.
	Policy Policy

	// StuckAfter is how long an acquire waits before OnStuck is called;
	// further calls follow at doubling intervals, at most 5 minutes apart.
	// Default 10s.
	StuckAfter time.Duration

	// OnStuck, if set, is called from the waiting goroutine when an acquire
	// has waited StuckAfter and again with backoff while it still waits. The
	// wait goes on when it returns. It must not call this Registry's locks.
	OnStuck func(StuckEvent)

	// PollInterval is how often a waiter checks that a holder the kernel does
	// not watch (no robust list in its process) is still alive. Default 50ms.
	// Holders the kernel watches are checked every second, as a safety net.
	PollInterval time.Duration

	// Role names this process's part in the run (e.g. "worker"); lockwatch
	// shows it beside the pid.
	Role string
}

// Capacity limits, as checkHeader enforces them.
const (
	limitProcs   = 1 << 20
	limitLocks   = 1 << 22
	limitWaiters = 1 << 22
	limitEvents  = 1 << 24
)

func (o *Options) check() error {
	for _, c := range []struct {
		name  string
		v     int
		limit int
	}{{"MaxProcs", o.MaxProcs, limitProcs}, {"MaxLocks", o.MaxLocks, limitLocks},
		{"MaxWaiters", o.MaxWaiters, limitWaiters}, {"MaxEvents", o.MaxEvents, limitEvents}} {
		if c.v > c.limit {
			return fmt.Errorf("lockreg: Options.%s = %d is more than the limit %d", c.name, c.v, c.limit)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxProcs, 1024)
	def(&o.MaxLocks, 4096)
	def(&o.MaxWaiters, 4096)
	def(&o.MaxEvents, 65536)
	if o.Policy == PolicyDefault {
		o.Policy = Stall
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 50 * time.Millisecond
	}
}

// A Registry is this process's membership of a run: its mapping of the run's
// arena, its process-table entry and its stack dictionary. It is safe for
// concurrent use. A Registry's memory stays mapped until the process exits,
// even after Close, so that no goroutine still inside a lock call can fault.
type Registry struct {
	dir     string
	a       *arena
	opts    Options
	self    procid.ID
	pid     uint32
	procIdx uint32 // our process-table slot
	robust  bool   // the kernel watches our locks
	stacks  stackTable
	closed  atomic.Bool

	mu    sync.Mutex
	slots map[string]uint32 // lock name -> slot index
	links map[uint32]bool   // slots whose robust entry is linked
}

// ProcessInfo is what a process records of itself in the run directory,
// beside its process-table entry.
type ProcessInfo struct {
	PID    int      `json:"pid"`
	Start  uint64   `json:"start"`
	Exe    string   `json:"exe"`
	Args   []string `json:"args"`
	Role   string   `json:"role,omitempty"`
	Robust bool     `json:"robust"`
	Why    string   `json:"no_robust_reason,omitempty"`
	Go     string   `json:"go"`
}

// processFile returns the base name of a process's files in the run directory.
func processFile(id procid.ID, ext string) string {
	return fmt.Sprintf("p-%d-%d.%s", id.PID, id.Start, ext)
}

// Open joins the run in dir, creating the directory (mode 0700; its parent
// must exist) and the arena if this is the first process of the run. Many
// processes may open a new run at once: they all get the same arena.
func Open(dir string, opts Options) (*Registry, error) {
	opts.setDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := checkRunDir(dir, true); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ArenaFile)
	a, err := openArena(path, true)
	if errors.Is(err, ErrNotRun) {
		g := layout(uint32(opts.MaxProcs), uint32(opts.MaxLocks), uint32(opts.MaxWaiters), ringSlotsFor(opts.MaxEvents, opts.MaxLocks))
		if g.total > maxArenaSize {
			return nil, fmt.Errorf("lockreg: capacities need %d bytes, more than the maximum %d", g.total, maxArenaSize)
		}
		if err := createArena(dir, g); err != nil {
			return nil, fmt.Errorf("lockreg: creating the arena in %s: %w", dir, err)
		}
		a, err = openArena(path, true)
	}
	if err != nil {
		return nil, err
	}
	r := &Registry{
		dir: dir, a: a, opts: opts, self: proc.Self(), pid: uint32(os.Getpid()),
		robust: a.robust, slots: make(map[string]uint32), links: make(map[uint32]bool),
	}
	if r.robust {
		r.robust = robustLink(unsafePointer(&a.hdr.namesLock))
	}
	if err := r.register(); err != nil {
		return nil, err
	}
	clock.Process.Start() // the coarse clock of acquires; Close stops it
	return r, nil
}

// register claims a process-table slot and writes the process's files.
func (r *Registry) register() error {
	_, why := RobustList()
	exe, _ := os.Executable()
	info := ProcessInfo{PID: r.self.PID, Start: r.self.Start, Exe: exe, Args: os.Args, Role: r.opts.Role,
		Robust: r.robust, Why: why, Go: runtime.Version()}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	infoPath := filepath.Join(r.dir, processFile(r.self, "json"))
	if err := writeFileNoFollow(infoPath, b); err != nil {
		return fmt.Errorf("lockreg: writing %s: %w", infoPath, err)
	}
	r.stacks.dict, err = stackdump.CreateDict(filepath.Join(r.dir, processFile(r.self, "stacks")))
	if err != nil {
		return fmt.Errorf("lockreg: stack dictionary: %w", err)
	}
	for i := uint32(0); i < r.a.g.maxProcs; i++ {
		p := r.a.proc(i)
		if p.pid.Load() != 0 || !p.pid.CompareAndSwap(0, r.pid) {
			continue
		}
		p.start.Store(r.self.Start)
		p.registered.Store(nanotime())
		if r.robust {
			p.flags.Store(procRobust)
		}
		p.state.Store(procRunning)
		r.procIdx = i
		return nil
	}
	return fmt.Errorf("%w: all %d process slots are taken; create the run with a larger Options.MaxProcs", ErrFull, r.a.g.maxProcs)
}

func writeFileNoFollow(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// Dir returns the run directory.
func (r *Registry) Dir() string { return r.dir }

// Self returns this process's identity as the registry records it.
func (r *Registry) Self() procid.ID { return r.self }

// Robust reports whether the kernel marks this process's locks if it dies.
func (r *Registry) Robust() bool { return r.robust }

// Close marks this process as exited cleanly in the process table and closes
// its stack dictionary. Locks still held stay held (and are reported as such).
// Lock calls after Close return ErrClosed.
func (r *Registry) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	clock.Process.Stop()
	p := r.a.proc(r.procIdx)
	p.exited.Store(nanotime())
	p.state.Store(procExited)
	r.stacks.mu.Lock()
	defer r.stacks.mu.Unlock()
	err := r.stacks.dict.Close()
	r.stacks.dict = nil
	return errors.Join(err, r.stacks.err)
}

// Mutex returns the cross-process mutex called name, creating it in the run
// if no process has yet. Every process that asks for the same name gets the
// same lock. Names are 1 to 63 bytes of UTF-8.
func (r *Registry) Mutex(name string) (*Mutex, error) { return r.MutexWith(name, MutexOptions{}) }

// MutexOptions override the registry's options for one Mutex handle.
type MutexOptions struct {
	Policy     Policy
	StuckAfter time.Duration
	OnStuck    func(StuckEvent)
}

// MutexWith is Mutex with options for this handle.
func (r *Registry) MutexWith(name string, o MutexOptions) (*Mutex, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return nil, fmt.Errorf("lockreg: invalid lock name %q: want 1 to %d bytes of UTF-8", name, maxNameLen)
	}
	idx, err := r.slotFor(name)
	if err != nil {
		return nil, err
	}
	if o.Policy == PolicyDefault {
		o.Policy = r.opts.Policy
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = r.opts.StuckAfter
	}
	if o.OnStuck == nil {
		o.OnStuck = r.opts.OnStuck
	}
	return &Mutex{r: r, s: r.a.lock(idx), idx: idx, name: name, opts: o}, nil
}

// slotFor finds or allocates the lock slot of name, and links its robust
// entry once per process. Both cost O(1) in the number of locks: names are
// found through the arena's name index (nameindex.go).
func (r *Registry) slotFor(name string) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if idx, ok := r.slots[name]; ok {
		return idx, nil
	}
	idx, ok := r.findSlot(name)
	if !ok {
		r.lockNames()
		r.indexPending()
		idx, ok = r.findSlot(name)
		if !ok {
			n := r.a.hdr.nlocks.Load()
			if n >= r.a.g.maxLocks {
				r.unlockNames()
				return 0, fmt.Errorf("%w: all %d lock slots are taken; create the run with a larger Options.MaxLocks", ErrFull, r.a.g.maxLocks)
			}
			s := r.a.lock(n)
			s.nameLen = uint8(len(name))
			copy(s.name[:], name)
			s.state.Store(1)
			r.a.hdr.nlocks.Store(n + 1) // publishes the name
			if testHookNamePublished != nil {
				testHookNamePublished(name)
			}
			r.indexInsert(n)
			r.a.hdr.nindexed.Store(n + 1)
			idx = n
		}
		r.unlockNames()
	}
	r.slots[name] = idx
	if r.robust && !r.links[idx] {
		if !robustLink(unsafePointer(&r.a.lock(idx).word)) {
			// Past the kernel's list limit: waiters fall back to polling.
			r.robust = false
			r.a.proc(r.procIdx).flags.Store(0)
		}
		r.links[idx] = true
	}
	return idx, nil
}

// testHookNamePublished, set only by tests, runs after a new lock's slot is
// published and before it is in the name index: the tests park a creator
// there and SIGKILL it.
var testHookNamePublished func(name string)

// lockNames takes the arena's name-allocation lock, a futex word like a
// lock's. A holder that died is detected by the kernel (OWNER_DIED) or by
// liveness and the lock taken over: allocation is idempotent, since a slot
// only counts once nlocks is stored, and the name index is repaired by
// indexPending, which every holder of the lock runs first.
//
// A process that sleeps on the word sets WAITERS first (and a process that
// takes the word while others may sleep keeps it set), so that unlockNames
// makes the futex system call only when someone may be asleep: creating a
// lock nobody else is creating costs no system call.
func (r *Registry) lockNames() {
	w := &r.a.hdr.namesLock
	if w.CompareAndSwap(0, r.pid) {
		return
	}
	for {
		v := w.Load()
		switch {
		case v == 0:
			if w.CompareAndSwap(0, r.pid|waitersBit) {
				return
			}
			continue
		case v&tidMask == 0 || r.status(v&tidMask, 0).Dead():
			// The holder died (the kernel marked the word, or it is
			// proven gone): take the lock over.
			if w.CompareAndSwap(v, r.pid|waitersBit) {
				return
			}
			continue
		case v&waitersBit == 0:
			if !w.CompareAndSwap(v, v|waitersBit) {
				continue
			}
			v |= waitersBit
		}
		futexWait(w, v, 10*time.Millisecond)
	}
}

func (r *Registry) unlockNames() {
	if r.a.hdr.namesLock.Swap(0)&waitersBit != 0 {
		futexWake(&r.a.hdr.namesLock, 1<<30)
	}
}

// status tells whether the process with pid (and, when known, start time)
// lives. Without a start time, it looks for the pid in the process table,
// so that a reused pid is not taken for a registered process.
func (r *Registry) status(pid uint32, start uint64) procid.Status {
	if start == 0 {
		for i := uint32(0); i < r.a.g.maxProcs; i++ {
			p := r.a.proc(i)
			if p.pid.Load() == pid && p.state.Load() != procFree {
				st, _ := proc.Check(procid.ID{PID: int(pid), Start: p.start.Load()})
				if !st.Dead() {
					return st
				}
				start = p.start.Load()
			}
		}
	}
	st, _ := proc.Check(procid.ID{PID: int(pid), Start: start})
	return st
}

// robustPID reports whether the registered process with pid is watched by
// the kernel's robust list. A dead predecessor with the same pid may still
// have a running slot; any such slot without the flag makes the answer no,
// so that the holder is polled at the faster interval.
func (r *Registry) robustPID(pid uint32) bool {
	found := false
	for i := uint32(0); i < r.a.g.maxProcs; i++ {
		p := r.a.proc(i)
		if p.pid.Load() == pid && p.state.Load() == procRunning {
			if p.flags.Load()&procRobust == 0 {
				return false
			}
			found = true
		}
	}
	return found
}
