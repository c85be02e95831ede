package lockreg

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/stackdict"
	"github.com/lockwatch/lockwatch/procid"
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
	// MaxEdges is the capacity of the run's lock-order edge table (default
	// 8192): the distinct ordered pairs of locks taken nested that it
	// records; edges past it are counted as dropped.
	MaxEdges int

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
	// wait goes on when it returns. It must not call this Registry's locks,
	// nor Close it (Close waits for the wait to end).
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
		{"MaxWaiters", o.MaxWaiters, limitWaiters}, {"MaxEvents", o.MaxEvents, limitEvents},
		{"MaxEdges", o.MaxEdges, arena.LimitEdges}} {
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
	def(&o.MaxEdges, 8192)
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
// concurrent use. Close releases all of it; Mutex calls made after Close,
// or still waiting when it is called, return ErrClosed.
type Registry struct {
	dir     string
	rd      *arena.RunDir // the run directory, opened once: every file is opened relative to it
	a       *arena.Arena
	opts    Options
	self    procid.ID
	pid     uint32
	procIdx uint32 // our process-table slot
	robust  bool   // the kernel watches our locks
	stacks  stackTable
	closed  atomic.Bool

	// inflight counts the calls inside the mapping that may block (the
	// slow paths, Snapshot, Mutex); left gets a token when it drops to 0
	// after Close. Fast paths are tracked by pinning instead (see Close).
	inflight atomic.Int64
	left     chan struct{}

	pmu  sync.Mutex
	prec arena.ProcCopy // our process-table entry as last written

	// order tracks the locks each goroutine holds and the lock-order
	// edges this process knows are recorded (order.go); nil under NoRecord.
	order *orderState

	mu    sync.Mutex
	slots map[string]uint32 // lock name -> slot index
	links map[uint32]bool   // slots whose robust entry is linked
}

// enter counts a call that uses the mapping and may block; it reports false,
// counting nothing, once the registry is closed. A true enter is paired with
// leave.
func (r *Registry) enter() bool {
	r.inflight.Add(1)
	// Close stores closed, then waits for inflight to be 0; we add, then
	// load closed. Both sides are sequentially consistent: either we see
	// closed, or Close sees our count and waits for our leave.
	if r.closed.Load() {
		r.leave()
		return false
	}
	return true
}

func (r *Registry) leave() {
	if r.inflight.Add(-1) == 0 && r.closed.Load() {
		select {
		case r.left <- struct{}{}:
		default:
		}
	}
}

// Open joins the run in dir, creating the directory (mode 0700; its parent
// must exist) and the arena if this is the first process of the run. Many
// processes may open a new run at once: they all get the same arena.
func Open(dir string, opts Options) (*Registry, error) {
	opts.setDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	rd, err := arena.OpenDir(dir, true)
	if err != nil {
		return nil, err
	}
	a, err := arena.OpenArena(rd, true, robust.ok)
	if errors.Is(err, arena.ErrNotRun) {
		g := arena.Layout(uint32(opts.MaxProcs), uint32(opts.MaxLocks), uint32(opts.MaxWaiters), arena.RingSlotsFor(opts.MaxEvents, opts.MaxLocks)).WithEdges(uint32(opts.MaxEdges))
		if g.Total > arena.MaxArenaSize {
			rd.Close()
			return nil, fmt.Errorf("lockreg: capacities need %d bytes, more than the maximum %d", g.Total, arena.MaxArenaSize)
		}
		if err := arena.CreateArena(rd, g); err != nil {
			rd.Close()
			return nil, fmt.Errorf("lockreg: creating the arena in %s: %w", dir, err)
		}
		a, err = arena.OpenArena(rd, true, robust.ok)
	}
	if err != nil {
		rd.Close()
		return nil, err
	}
	a.Unlink = robustUnlinkRange
	r := &Registry{
		dir: dir, rd: rd, a: a, opts: opts, self: proc.Self(), pid: uint32(os.Getpid()),
		robust: a.Robust, slots: make(map[string]uint32), links: make(map[uint32]bool),
		left: make(chan struct{}, 1),
	}
	if r.robust {
		r.robust = robustLink(unsafePointer(&a.Hdr.NamesLock))
	}
	if !opts.NoRecord {
		r.order = newOrderState(a.G.MaxEdges)
	}
	if err := r.register(); err != nil {
		// Nothing of this Registry was published: unmapping unlinks the
		// robust entries (the names lock's) along with the mapping.
		return nil, errors.Join(err, a.Unmap(), rd.Close())
	}
	return r, nil
}

// register claims a process-table slot and writes the process's files. On
// failure it leaves nothing open: the caller unmaps the arena.
func (r *Registry) register() error {
	_, why := RobustList()
	exe, _ := os.Executable()
	info := arena.ProcessInfo{PID: r.self.PID, Start: r.self.Start, Exe: exe, Args: os.Args, Role: r.opts.Role,
		Robust: r.robust, Why: why, Go: runtime.Version()}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := r.rd.WriteFile(arena.ProcessFile(r.self, "json"), b); err != nil {
		return fmt.Errorf("lockreg: writing the info file: %w", err)
	}
	df, err := r.rd.OpenFile(arena.ProcessFile(r.self, "stacks"), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		r.stacks.dict, err = stackdict.Open(df)
	}
	if err != nil {
		return fmt.Errorf("lockreg: stack dictionary: %w", err)
	}
	idx, owner, reclaimed, ok := r.claimSlot()
	if !ok {
		err := fmt.Errorf("%w: all %d process slots are taken by live processes; create the run with a larger Options.MaxProcs",
			ErrFull, r.a.G.MaxProcs)
		return errors.Join(err, r.stacks.dict.Close())
	}
	r.procIdx = idx
	r.prec = arena.ProcCopy{State: arena.SlotRunning, Pid: r.pid, Start: r.self.Start, Registered: nanotime(), Tag: owner}
	if r.robust {
		r.prec.Flags = arena.ProcRobust
	}
	r.a.Proc(idx).Write(r.prec)
	if reclaimed {
		// The process whose slot this was, and any other that nothing in
		// the run names any more, leave the run directory: its size is
		// bounded by the process table and what the records name.
		_, _ = arena.SweepProcessFiles(r.rd, r.a)
	}
	return nil
}

// claimSlot takes a process-table slot: this process's own, left by a
// Registry of it that was closed (reopening takes no new slot); else a
// never-used slot; else the slot of a process proven dead (slotDead). The
// claim is a CAS on the slot's owner word from the value the decision was
// made on, with the generation incremented, so two processes never claim
// one slot, and a slot that changed hands since it was read is never taken.
//
// Reuse is safe for the records that name a process (holder and waiter
// records, events): each carries the pid and start time of its process,
// and the slot number some of them keep is a hint that readers use only
// when the slot still holds that identity (arena.procSlotOf). So a record
// of a dead process, or an old event, never names the slot's next owner.
// The dead process's files (info file, stack dictionary) stay in the run
// directory, named by its identity, as long as a record names it
// (arena.SweepProcessFiles, which register calls after a reclaim).
func (r *Registry) claimSlot() (idx uint32, owner uint64, reclaimed, ok bool) {
	n := r.a.G.MaxProcs
	next := func(o uint64) uint64 { return (o>>32+1)<<32 | uint64(r.pid) }
	for i := uint32(0); i < n; i++ { // our own closed slot
		p := r.a.Proc(i)
		o := p.Owner.Load()
		if o == 0 {
			break // never-used slots follow the used ones
		}
		if uint32(o) != r.pid {
			continue
		}
		c, ok := p.Read(arena.ReadTries)
		if ok && c.Tag == o && c.State == arena.SlotExited && c.Start == r.self.Start && p.Owner.CompareAndSwap(o, next(o)) {
			return i, next(o), false, true
		}
	}
	for i := uint32(0); i < n; i++ { // a never-used slot
		p := r.a.Proc(i)
		if p.Owner.Load() == 0 && p.Owner.CompareAndSwap(0, next(0)) {
			return i, next(0), false, true
		}
	}
	// The slot of a dead process: first of one that closed its registry,
	// then of one that died without (killed, crashed): those are what a
	// report is about, so their entries are kept longest.
	for _, clean := range []bool{true, false} {
		for i := uint32(0); i < n; i++ {
			p := r.a.Proc(i)
			o := p.Owner.Load()
			if o == 0 {
				break
			}
			if clean {
				if c, ok := p.Read(arena.ReadTries); !ok || c.Tag != o || c.State != arena.SlotExited {
					continue
				}
			}
			if arena.SlotDead(p, o) {
				r.freeNamesOf(uint32(o))
				if testHook != nil {
					testHook("reclaim-decided")
				}
				if p.Owner.CompareAndSwap(o, next(o)) {
					return i, next(o), true, true
				}
			}
		}
	}
	return 0, 0, false, false
}

// Dir returns the run directory.
func (r *Registry) Dir() string { return r.dir }

// runDir returns the run directory's handle, which files of this process
// in the run are opened through. It is closed by Close.
func (r *Registry) runDir() *arena.RunDir { return r.rd }

// Self returns this process's identity as the registry records it.
func (r *Registry) Self() procid.ID { return r.self }

// Robust reports whether the kernel marks this process's locks if it dies.
func (r *Registry) Robust() bool { return r.robust }

// Close marks this process as exited cleanly in the process table, closes
// its stack dictionary and releases the arena's mappings, its address-space
// reservation and the robust-list entries of its locks. Locks still held
// stay held (and are reported as such; once this process exits, waiters
// find it dead by checking its liveness). Lock calls waiting when Close is
// called return ErrClosed, and so do calls made after it. Close waits for
// calls in progress to return.
//
// Unmapping is safe once no goroutine can still touch the mapping. Blocking
// calls are counted (enter, leave): Close wakes the ones asleep on a word,
// and waits for the count to drop to 0; TryLock is counted too. The fast
// paths (Lock's first CAS, Unlock) are not counted, which would cost two
// atomic additions each; they run pinned to their P instead
// (runtime.procPin, as sync.Pool does), and check closed inside the pinned
// section. A pinned goroutine cannot be preempted, so a stop-the-world
// cannot begin while one is inside such a section; Close, after storing
// closed, stops the world once (runtime.ReadMemStats does), and then every
// fast path either has finished or will see closed. This leans on the runtime's scheduler, not
// on the memory model, like sync.Pool's own cleanup.
func (r *Registry) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.mu.Lock()
	words := []*atomic.Uint32{&r.a.Hdr.NamesLock}
	for _, idx := range r.slots {
		words = append(words, &r.a.Lock(idx).Word)
	}
	r.mu.Unlock()
	for r.inflight.Load() != 0 {
		// Wake our sleepers: they see closed and leave. One that was
		// about to sleep sleeps at most its poll interval; wake again.
		for _, w := range words {
			futexWake(w, math.MaxInt32)
		}
		select {
		case <-r.left:
		case <-time.After(10 * time.Millisecond):
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms) // the stop-the-world that ends every pinned fast path
	r.pmu.Lock()
	r.prec.State, r.prec.Exited = arena.SlotExited, nanotime()
	r.a.Proc(r.procIdx).Write(r.prec)
	r.pmu.Unlock()
	r.stacks.mu.Lock()
	err := r.stacks.dict.Close()
	r.stacks.dict = nil
	err = errors.Join(err, r.stacks.err)
	r.stacks.mu.Unlock()
	return errors.Join(err, r.a.Unmap(), r.rd.Close())
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
	if name == "" || len(name) > arena.MaxNameLen || !utf8.ValidString(name) {
		return nil, fmt.Errorf("lockreg: invalid lock name %q: want 1 to %d bytes of UTF-8", name, arena.MaxNameLen)
	}
	if !r.enter() {
		return nil, ErrClosed
	}
	defer r.leave()
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
	return &Mutex{r: r, s: r.a.Lock(idx), idx: idx, name: name, opts: o,
		ring: r.a.Ring(idx), held0: r.a.RingSlot(idx, 0), hmask: r.a.G.RingSlots/2 - 1}, nil
}

// slotFor finds or allocates the lock slot of name, and links its robust
// entry once per process.
func (r *Registry) slotFor(name string) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if idx, ok := r.slots[name]; ok {
		return idx, nil
	}
	idx, ok := r.findSlot(name)
	if !ok {
		if !r.lockNames() {
			return 0, ErrClosed
		}
		if testHook != nil {
			testHook("names-locked")
		}
		r.indexPending()
		n := r.a.Hdr.Nlocks.Load()
		idx, ok = r.findSlot(name)
		if !ok {
			if n >= r.a.G.MaxLocks {
				r.unlockNames()
				return 0, fmt.Errorf("%w: all %d lock slots are taken; create the run with a larger Options.MaxLocks", ErrFull, r.a.G.MaxLocks)
			}
			s := r.a.Lock(n)
			s.NameLen = uint8(len(name))
			copy(s.Name[:], name)
			// The fencing counter starts at the wall clock: see tokenStart.
			s.Holder.Token.Store(tokenStart())
			s.State.Store(1)
			r.a.Hdr.Nlocks.Store(n + 1) // publishes the name
			if testHook != nil {
				testHook("name-published")
			}
			r.indexInsert(n)
			r.a.Hdr.Nindexed.Store(n + 1)
			idx = n
		}
		r.unlockNames()
	}
	r.slots[name] = idx
	if r.robust && !r.links[idx] {
		if !robustLink(unsafePointer(&r.a.Lock(idx).Word)) {
			// Past the kernel's list limit: waiters fall back to polling.
			r.robust = false
			r.pmu.Lock()
			r.prec.Flags = 0
			r.a.Proc(r.procIdx).Write(r.prec)
			r.pmu.Unlock()
		}
		r.links[idx] = true
	}
	return idx, nil
}

// lockNames takes the arena's name-allocation lock, a futex word like a
// lock's. A holder that died is detected by the kernel (OWNER_DIED) or by
// liveness and the lock taken over: allocation is idempotent, since a slot
// only counts once nlocks is stored, and the name index is repaired by
// indexPending, which every holder of the lock runs first. It reports
// false, without the lock, once the registry is closed.
//
// A process that sleeps on the word sets WAITERS first (and a process that
// takes the word while others may sleep keeps it set), so that unlockNames
// makes the futex system call only when someone may be asleep: creating a
// lock nobody else is creating costs no system call.
func (r *Registry) lockNames() bool {
	w := &r.a.Hdr.NamesLock
	if w.CompareAndSwap(0, r.pid) {
		return true
	}
	for {
		if r.closed.Load() {
			return false // Close wakes us, and waits for us to leave
		}
		v := w.Load()
		switch {
		case v == 0:
			if w.CompareAndSwap(0, r.pid|arena.WaitersBit) {
				return true
			}
			continue
		case v&arena.TidMask == 0 || r.status(v&arena.TidMask, 0).Dead():
			// The holder died (the kernel marked the word, or it is
			// proven gone): take the lock over.
			if w.CompareAndSwap(v, r.pid|arena.WaitersBit) {
				return true
			}
			continue
		case v&arena.WaitersBit == 0:
			if !w.CompareAndSwap(v, v|arena.WaitersBit) {
				continue
			}
			v |= arena.WaitersBit
		}
		futexWait(w, v, 10*time.Millisecond)
	}
}

// freeNamesOf marks the names lock as its holder's death would, if a process
// with pid holds it and every registered process with that pid is proven
// dead. It is called before a dead process's slot is reclaimed: afterwards,
// with the slot gone and the pid perhaps reused, lockNames could no longer
// prove that holder dead. A live process with that pid could only hold the
// lock after registering, and then status finds it alive.
func (r *Registry) freeNamesOf(pid uint32) {
	w := &r.a.Hdr.NamesLock
	if v := w.Load(); v&arena.TidMask == pid && r.status(pid, 0).Dead() {
		w.CompareAndSwap(v, (v&arena.WaitersBit)|arena.OwnerDiedBit)
	}
}

func (r *Registry) unlockNames() {
	if r.a.Hdr.NamesLock.Swap(0)&arena.WaitersBit != 0 {
		futexWake(&r.a.Hdr.NamesLock, 1<<30)
	}
}

// testHook, when set, is called at named points of the crash-recovery
// paths, so that a test can SIGKILL a process exactly there. Only this
// package's tests set it, in a child process of theirs; it is nil in every
// other program, where it costs one load on slow paths.
var testHook func(point string)

// status tells whether the process with pid (and, when known, start time)
// lives. Without a start time, it looks for the pid in the process table,
// so that a reused pid is not taken for a registered process.
func (r *Registry) status(pid uint32, start uint64) procid.Status {
	if start == 0 {
		for i := uint32(0); i < r.a.G.MaxProcs; i++ {
			p := r.a.Proc(i)
			o := p.Owner.Load()
			if o == 0 {
				break
			}
			if uint32(o) != pid {
				continue
			}
			if c, ok := p.Read(arena.ReadTries); ok && c.Pid == pid && c.State != arena.SlotFree {
				st, _ := proc.Check(procid.ID{PID: int(pid), Start: c.Start})
				if !st.Dead() {
					return st
				}
				start = c.Start
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
	for i := uint32(0); i < r.a.G.MaxProcs; i++ {
		p := r.a.Proc(i)
		o := p.Owner.Load()
		if o == 0 {
			break
		}
		if uint32(o) != pid {
			continue
		}
		if c, ok := p.Read(arena.ReadTries); ok && c.Pid == pid && c.State == arena.SlotRunning {
			if c.Flags&arena.ProcRobust == 0 {
				return false
			}
			found = true
		}
	}
	return found
}
