// Package dropinsrc presents the drop-in mutexes of a run's processes
// (github.com/lockwatch/lockwatch/sync) to the diagnosis: it asks the probe
// of each process of the run for its held and awaited mutexes
// (probeclient.Client.Mutexes) and turns them into locks of kind "mutex" and
// "rwmutex", with the recorded stacks as the stack resolver.
//
//	src := report.Sources{Locks: []lockstate.Source{lockregsrc.New(dir), dropinsrc.New(dir, time.Second)}, Host: liveness.System{}}
//
// A process's goroutines are the same parties in both kinds of lock, so a
// goroutine that holds a drop-in mutex while it waits for a lockreg lock is
// one node of the wait-for graph.
//
// It also reads each process's lock-order edges (docs/lock-order.md): from
// its probe while it runs (probeclient.Client.Orders), from the orders file its
// probe keeps in the run directory once it exited, or when the Source is
// told not to ask probes (Files).
package dropinsrc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/dropinmem"
	"github.com/lockwatch/lockwatch/internal/diag/jsonbudget"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Kinds of the locks a Source reads.
const (
	KindMutex   = "mutex"
	KindRWMutex = "rwmutex"
)

// A Source reads the drop-in mutexes of the processes of the run in a
// directory. Build it with New. It is safe for concurrent use.
type Source struct {
	Dir string
	// Timeout bounds each probe's answer.
	Timeout time.Duration
	// Concurrency is how many probes are asked at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Processes lists the run's processes; nil means arena.ReadProcesses.
	Processes func(dir string) ([]arena.Process, error)
	// Ask asks one process's probe for its mutexes; nil (with AskOrders
	// nil) means probeclient.Client.MutexesAndOrders on the process's control
	// socket, the mutexes and the edges in one request.
	Ask func(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.MutexView, error)
	// AskOrders asks one process's probe for its lock-order edges; nil
	// means probeclient.Client.Orders on the process's control socket.
	AskOrders func(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.OrderView, error)
	// Files: ask no probe; read only the orders files the processes left
	// (a run that ended: its processes' mutexes are gone, their edges are
	// not).
	Files bool
}

// DefaultConcurrency is how many probes a Source asks at once by default
// (report.DefaultProbeConcurrency: a run of 64 processes is not asked all
// at once).
const DefaultConcurrency = 8

// New returns the Source of the run in dir, giving each probe timeout.
func New(dir string, timeout time.Duration) Source { return Source{Dir: dir, Timeout: timeout} }

// Ended returns the Source of the run in dir that asks no probe: the
// lock-order edges its processes left in their orders files.
func Ended(dir string) Source { return Source{Dir: dir, Files: true} }

func ask(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.MutexView, error) {
	c := &probeclient.Client{Path: probeclient.SocketPath(dir, id), Timeout: timeout}
	return c.Mutexes(ctx)
}

func askOrders(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.OrderView, error) {
	c := &probeclient.Client{Path: probeclient.SocketPath(dir, id), Timeout: timeout}
	return c.Orders(ctx)
}

// askBoth asks one probe for its mutexes and its lock-order edges in one
// request (one connection, one wake-up of the process), and for the edges
// on their own when the probe answered the mutexes alone.
func askBoth(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.MutexView, *probeclient.OrderView, error, error) {
	c := &probeclient.Client{Path: probeclient.SocketPath(dir, id), Timeout: timeout}
	v, o, err := c.MutexesAndOrders(ctx)
	if err != nil {
		return nil, nil, err, err
	}
	if o == nil {
		o, oerr := c.Orders(ctx)
		return v, o, nil, oerr
	}
	return v, o, nil, nil
}

// noMutexes tells a process whose probe keeps its no-mutexes file: it has
// never had a drop-in mutex, so it holds and awaits none and has no
// lock-order edge between them (probeclient.NoMutexesFile). Any doubt (the file
// cannot be looked at) asks the probe.
func noMutexes(dir string, id procid.ID) bool {
	_, _, base := arena.ProcessFiles(dir, id)
	fi, err := os.Lstat(filepath.Join(dir, probeclient.NoMutexesFile(base)))
	return err == nil && fi.Mode().IsRegular()
}

// standsDown says why a probe stands down, and for how long.
const standsDown = "every goroutine looked blocked, so it gave way for Go's runtime to judge; it serves again after the program's next garbage collection"

// stoodDown tells a process whose probe stands down by the mark it keeps
// meanwhile (probeclient.DownFile).
func stoodDown(dir string, id procid.ID) bool {
	_, _, base := arena.ProcessFiles(dir, id)
	fi, err := os.Lstat(filepath.Join(dir, probeclient.DownFile(base)))
	return err == nil && fi.Mode().IsRegular()
}

// maxOrdersFile bounds an orders file read: what one probe answer holds.
const maxOrdersFile = 4 << 20

// maxOrdersValues bounds the JSON values of an orders file decoded, as the
// probe client bounds an answer's: empty objects would build 60 bytes of
// structure for each 3 bytes of file.
const maxOrdersValues = 1 << 17

// readOrdersFile reads the orders file of process id; nil, nil if it has
// none.
func readOrdersFile(dir string, id procid.ID) (*probeclient.OrderView, error) {
	_, _, base := arena.ProcessFiles(dir, id)
	path := filepath.Join(dir, probeclient.OrdersFile(base))
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxOrdersFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxOrdersFile {
		return nil, fmt.Errorf("%s is larger than the %d MiB lockwatch reads", path, maxOrdersFile>>20)
	}
	if n := jsonbudget.Values(b); n > maxOrdersValues {
		return nil, fmt.Errorf("%s holds %d JSON values, more than the %d lockwatch decodes of one", path, n, maxOrdersValues)
	}
	var v probeclient.OrderView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if v.PID != id.PID || v.Start != id.Start {
		return nil, fmt.Errorf("%s names pid %d (start %d), not the process it belongs to", path, v.PID, v.Start)
	}
	return &v, nil
}

// Read asks every process of the run that has not exited and has drop-in
// mutexes (a probe says when its process has none: probeclient.NoMutexesFile),
// Concurrency at a time, each within Timeout from when it is asked, for
// its mutexes and its lock-order edges, and reads the orders file of every
// process whose probe does not answer (those that exited, all with Files). A
// process without a probe (no socket, or nobody listening) has no drop-in
// mutexes to tell; a probe that fails otherwise leaves a note. Its error is
// lockreg's when the run's process table cannot be read.
func (s Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	list, askOne := s.Processes, s.Ask
	if list == nil {
		list = arena.ReadProcesses
	}
	if askOne == nil {
		askOne = ask
	}
	askOrd := s.AskOrders
	if askOrd == nil {
		askOrd = askOrders
	}
	ps, err := list(s.Dir)
	if err != nil && !(errors.Is(err, arena.ErrNotRun) && HasArenas(s.Dir)) {
		return nil, err
	}
	// (A run whose processes only changed their import line has no
	// lockreg arena: only their drop-in arenas, read below.)
	type answer struct {
		id        procid.ID
		v         *probeclient.MutexView
		err       error
		orders    *probeclient.OrderView
		ordersErr error
		arena     bool  // found by its drop-in arena alone (no probe)
		down      bool  // its probe stands down (probeclient.DownFile)
		memErr    error // why its records could not be read from its memory
	}
	answers := make([]answer, 0, len(ps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	conc := s.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	slots := make(chan struct{}, conc)
	for _, p := range ps {
		id := p.Identity()
		live := p.State != arena.ProcExited && !s.Files
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			a := answer{id: id}
			switch {
			case live && noMutexes(s.Dir, id):
				// Its probe says it has none: nothing to ask.
			case live && s.Ask == nil && s.AskOrders == nil:
				a.v, a.orders, a.err, a.ordersErr = askBoth(ctx, s.Dir, id, s.Timeout)
			case live:
				a.v, a.err = askOne(ctx, s.Dir, id, s.Timeout)
				a.orders, a.ordersErr = askOrd(ctx, s.Dir, id, s.Timeout)
			}
			if live && a.err != nil && notProbed(a.err) {
				// No probe answers (one that stood down, so that Go's
				// runtime may judge a program that looked deadlocked,
				// has no socket until it serves again): its records,
				// from its memory, if it has some.
				a.down = stoodDown(s.Dir, id)
				v, err := dropinmem.View(id, s.Dir)
				if err == nil {
					a.v, a.err = v, nil
				} else if a.down {
					a.memErr = err
				}
			}
			if !live || (a.ordersErr != nil && (notProbed(a.ordersErr) || unknownOp(a.ordersErr))) {
				// Gone, or its probe does not answer: what it left.
				a.orders, a.ordersErr = readOrdersFile(s.Dir, id)
			}
			mu.Lock()
			answers = append(answers, a)
			mu.Unlock()
		})
	}
	wg.Wait()
	if !s.Files {
		// The processes that changed only their import line: no probe,
		// not in the run's table, but their arena is in the directory.
		known := map[int]bool{}
		for _, p := range ps {
			known[p.Identity().PID] = true
		}
		for _, id := range arenaProcesses(s.Dir, known) {
			v, err := dropinmem.View(id, s.Dir)
			answers = append(answers, answer{id: id, v: v, err: err, arena: true})
		}
	}
	slices.SortFunc(answers, func(a, b answer) int { return a.id.PID - b.id.PID })
	out := &lockstate.Snapshot{Run: s.Dir, Taken: time.Now()}
	for _, a := range answers {
		if a.arena {
			// A member of the run that is in no process table: listed,
			// its life checked by the host as any other's.
			out.Processes = append(out.Processes, lockstate.Process{ID: a.id})
		}
	}
	res := &stacks{byID: map[key][]stackdump.Frame{}}
	withEdges := 0
	for _, a := range answers {
		if a.orders != nil && len(a.orders.Edges) > 0 {
			withEdges++
		}
	}
	for _, a := range answers {
		switch {
		case a.v == nil && a.err == nil:
		case a.err != nil && notProbed(a.err):
		case a.err != nil:
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's probe did not list its drop-in mutexes: %v", a.id.PID, a.err))
		default:
			Convert(out, res, a.id, a.v)
		}
		switch {
		case !a.down:
		case a.memErr != nil:
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's probe stands down (%s), and its drop-in mutexes could not be read from its memory either: %v", a.id.PID, standsDown, a.memErr))
		default:
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's probe stands down (%s): its drop-in mutexes were read from their records in its memory", a.id.PID, standsDown))
		}
		switch {
		case a.ordersErr != nil && !notProbed(a.ordersErr):
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's drop-in lock-order edges were not read: %v", a.id.PID, a.ordersErr))
		case a.orders != nil:
			ConvertOrders(out, res, a.id, a.orders, withEdges > 1)
		}
	}
	unique(out.Locks)
	out.Stacks = res
	return out, nil
}

// maxArenas bounds the arena files one Read looks at.
const maxArenas = 4096

// HasArenas reports whether dir holds the drop-in arena file of some
// process (inproc.ArenaFile): a process joined the run by importing the
// drop-in sync, with or without a probe.
func HasArenas(dir string) bool { return Arenas(dir) > 0 }

// Arenas counts the drop-in arena files in dir (at most maxArenas): the
// processes that joined the run by importing the drop-in sync, alive or
// not (a file outlives its process).
func Arenas(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if isArenaFile(e) {
			n++
		}
		if n == maxArenas {
			break
		}
	}
	return n
}

// isArenaFile tells a drop-in arena file of a run directory by its name.
func isArenaFile(e os.DirEntry) bool {
	name := e.Name()
	pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "dropin-"), ".arena"))
	return err == nil && pid > 0 && name == inproc.ArenaFile(pid) && e.Type().IsRegular()
}

// arenaProcesses lists the live processes whose drop-in arena is in dir
// (inproc.ArenaFile) and that known does not hold: a file whose process
// has exited, or whose pid now names another process, is left out.
func arenaProcesses(dir string, known map[int]bool) []procid.ID {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []procid.ID
	for _, e := range ents {
		if !isArenaFile(e) {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(e.Name(), "dropin-"), ".arena"))
		if known[pid] {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			continue // exited: its mutexes went with it
		}
		out = append(out, st.Identity())
		if len(out) == maxArenas {
			break
		}
	}
	return out
}

// unknownOp tells a probe that does not know the orders request (an older
// lockwatch): its process left no orders file either, but looking costs
// nothing.
func unknownOp(err error) bool {
	var ae *probeclient.AnswerError
	return errors.As(err, &ae)
}

// notProbed tells a process that runs no probe (its socket is missing or
// refuses) from a probe that failed.
func notProbed(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// FreeUnlisted is what the free drop-in mutexes are counted as in a
// snapshot's Unlisted: a probe lists only those held or awaited.
const FreeUnlisted = "drop-in mutex"

// Convert appends the mutexes of process id (its probe's view v) to out,
// their stacks to res.
func Convert(out *lockstate.Snapshot, res *stacks, id procid.ID, v *probeclient.MutexView) {
	party := func(g int64) lockstate.Party { return lockstate.Party{ID: id, Goroutine: g} }
	for _, m := range v.Mutexes {
		// Many mutexes are first locked at one site (a field of every value
		// of a type): the id tells them apart.
		name := displayName(m.Name, m.Named, m.ID)
		if !m.Named && !slices.Contains(out.Notes, UnnamedNote) {
			out.Notes = append(out.Notes, UnnamedNote)
		}
		l := lockstate.Lock{Kind: m.Kind, Name: name}
		if h := m.Holder; h != nil {
			st := h.Stack
			if len(st) == 0 {
				st = []stackdump.Frame{h.Site}
			}
			l.Holders = append(l.Holders, lockstate.Holder{Party: party(h.Goroutine), Since: h.Since, Stack: res.add(id, st)})
		}
		for _, r := range m.Readers {
			l.Holders = append(l.Holders, lockstate.Holder{Party: party(r.Goroutine), Read: true, Since: r.Since,
				Stack: res.add(id, []stackdump.Frame{r.Site})})
		}
		for _, w := range m.Waiters {
			l.Waiters = append(l.Waiters, lockstate.Waiter{Party: party(w.Goroutine), Read: !w.Write, Since: w.Since,
				Stack: res.add(id, w.Stack)})
		}
		if m.MoreReaders > 0 {
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %s %q has %d more readers than its records list",
				id.PID, m.Kind, name, m.MoreReaders))
		}
		out.Locks = append(out.Locks, l)
	}
	if free := v.Live - len(v.Mutexes) - v.Truncated; free > 0 {
		if out.Unlisted == nil {
			out.Unlisted = make(map[string]int)
		}
		out.Unlisted[FreeUnlisted] += free
	}
	if v.Truncated > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d more drop-in mutexes held or awaited than one answer lists", id.PID, v.Truncated))
	}
	if v.MoreWaiters > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d goroutines wait for drop-in mutexes without a record", id.PID, v.MoreWaiters))
	}
}

// UnnamedNote is the report's note when it names a drop-in mutex that was
// given no name: what its "#N" means.
const UnnamedNote = `a drop-in mutex given no name (sync.SetName) is named after where it was first locked, then "#N", its id in its process (mutexes first locked at one place differ by it)`

// displayName is a mutex's name in the report: its given name, or its
// first site and id.
func displayName(name string, named bool, id uint64) string {
	if named {
		return name
	}
	return fmt.Sprintf("%s #%d", name, id)
}

// ConvertOrders appends the lock-order edges of process id (its probe's
// view v) to out, their stacks to res. With qualify, the mutexes' names
// carry the pid: a drop-in mutex is one process's, and two processes (of
// one program, whose mutexes have the same sites and ids) must not make
// one node of the order graph.
func ConvertOrders(out *lockstate.Snapshot, res *stacks, id procid.ID, v *probeclient.OrderView, qualify bool) {
	key := func(m probeclient.OrderMutex) lockstate.Key {
		k := lockstate.Key{Kind: m.Kind, Name: displayName(m.Name, m.Named, m.ID)}
		if qualify {
			k.Name = fmt.Sprintf("%s (pid %d)", k.Name, id.PID)
		}
		return k
	}
	for _, e := range v.Edges {
		out.Orders = append(out.Orders, lockstate.OrderEdge{From: key(e.From), To: key(e.To),
			Party: lockstate.Party{ID: id, Goroutine: e.Goroutine}, FromStack: res.add(id, e.FromStack),
			ToStack: res.add(id, e.ToStack), Time: e.Time})
	}
	out.OrdersDropped += v.Dropped
	if v.Dropped > 0 {
		what := fmt.Sprintf("%d lock-order edges", v.Dropped)
		if v.DroppedRepeats {
			what = fmt.Sprintf("at least %d acquires of lock-order edges", v.Dropped)
		}
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %s of drop-in mutexes were not recorded: its table of %d is full, and a cycle through them is missed",
			id.PID, what, v.Capacity))
	}
	if v.Untracked > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d acquires of drop-in mutexes were not tracked as held (more than 7 held at once by the goroutines of one bucket): lock-order edges from them are missed",
			id.PID, v.Untracked))
	}
	if v.Omitted > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d lock-order edges were left out of its probe's answer (bounded): a cycle through them is missed", id.PID, v.Omitted))
	}
	if v.Cut > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: the stacks of %d lock-order edges were cut to their call sites (the probe's answer is bounded)", id.PID, v.Cut))
	}
}

// unique gives locks of the same kind and name (mutexes of two processes
// given the same name) the pid of their process.
func unique(ls []lockstate.Lock) {
	n := map[lockstate.Key]int{}
	for i := range ls {
		n[ls[i].Key()]++
	}
	for i := range ls {
		if n[ls[i].Key()] > 1 {
			pid := 0
			switch {
			case len(ls[i].Holders) > 0:
				pid = ls[i].Holders[0].PID
			case len(ls[i].Waiters) > 0:
				pid = ls[i].Waiters[0].PID
			}
			ls[i].Name = fmt.Sprintf("%s (pid %d)", ls[i].Name, pid)
		}
	}
}

type key struct {
	id procid.ID
	n  uint64
}

// stacks keeps the frames the probes sent, under ids of its own.
type stacks struct {
	byID map[key][]stackdump.Frame
	next uint64
}

func (s *stacks) add(id procid.ID, fs []stackdump.Frame) uint64 {
	if len(fs) == 0 {
		return 0
	}
	s.next++
	s.byID[key{id, s.next}] = fs
	return s.next
}

// Stack implements lockstate.Resolver.
func (s *stacks) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) {
	fs, ok := s.byID[key{p, id}]
	return fs, ok
}
