// Package dropinsrc presents the drop-in mutexes of a run's processes
// (github.com/lockwatch/lockwatch/sync) to the diagnosis: it asks the probe
// of each process of the run for its held and awaited mutexes
// (probe.Client.Mutexes) and turns them into locks of kind "mutex" and
// "rwmutex", with the recorded stacks as the stack resolver.
//
//	src := report.Sources{Locks: []lockstate.Source{lockregsrc.New(dir), dropinsrc.New(dir, time.Second)}, Host: liveness.System{}}
//
// A process's goroutines are the same parties in both kinds of lock, so a
// goroutine that holds a drop-in mutex while it waits for a lockreg lock is
// one node of the wait-for graph.
package dropinsrc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/report/lockstate"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
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
	// Processes lists the run's processes; nil means lockreg.ReadProcesses.
	Processes func(dir string) ([]lockreg.Process, error)
	// Ask asks one process's probe for its mutexes; nil means
	// probe.Client.Mutexes on the process's control socket.
	Ask func(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probe.MutexView, error)
}

// DefaultConcurrency is how many probes a Source asks at once by default
// (report.DefaultProbeConcurrency: a run of 64 processes is not asked all
// at once).
const DefaultConcurrency = 8

// New returns the Source of the run in dir, giving each probe timeout.
func New(dir string, timeout time.Duration) Source { return Source{Dir: dir, Timeout: timeout} }

func ask(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probe.MutexView, error) {
	c := &probe.Client{Path: probe.SocketPath(dir, id), Timeout: timeout}
	return c.Mutexes(ctx)
}

// Read asks every process of the run that has not exited, Concurrency at
// a time, each within Timeout from when it is asked. A
// process without a probe (no socket, or nobody listening) has no drop-in
// mutexes to tell; a probe that fails otherwise leaves a note. Its error is
// lockreg's when the run's process table cannot be read.
func (s Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	list, askOne := s.Processes, s.Ask
	if list == nil {
		list = lockreg.ReadProcesses
	}
	if askOne == nil {
		askOne = ask
	}
	ps, err := list(s.Dir)
	if err != nil {
		return nil, err
	}
	type answer struct {
		id  procid.ID
		v   *probe.MutexView
		err error
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
		if p.State == lockreg.ProcExited {
			continue
		}
		id := p.Identity()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			v, err := askOne(ctx, s.Dir, id, s.Timeout)
			mu.Lock()
			answers = append(answers, answer{id, v, err})
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(answers, func(a, b answer) int { return a.id.PID - b.id.PID })
	out := &lockstate.Snapshot{Run: s.Dir, Taken: time.Now()}
	res := &stacks{byID: map[key][]stackdump.Frame{}}
	for _, a := range answers {
		switch {
		case a.err != nil && notProbed(a.err):
		case a.err != nil:
			out.Notes = append(out.Notes, fmt.Sprintf("pid %d's probe did not list its drop-in mutexes: %v", a.id.PID, a.err))
		default:
			Convert(out, res, a.id, a.v)
		}
	}
	unique(out.Locks)
	out.Stacks = res
	return out, nil
}

// notProbed tells a process that runs no probe (its socket is missing or
// refuses) from a probe that failed.
func notProbed(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// Convert appends the mutexes of process id (its probe's view v) to out,
// their stacks to res.
func Convert(out *lockstate.Snapshot, res *stacks, id procid.ID, v *probe.MutexView) {
	party := func(g int64) lockstate.Party { return lockstate.Party{ID: id, Goroutine: g} }
	for _, m := range v.Mutexes {
		name := m.Name
		if !m.Named {
			// Many mutexes are first locked at one site (a field of every
			// value of a type): the id tells them apart.
			name = fmt.Sprintf("%s #%d", m.Name, m.ID)
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
	if v.Truncated > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d more drop-in mutexes held or awaited than one answer lists", id.PID, v.Truncated))
	}
	if v.MoreWaiters > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("pid %d: %d goroutines wait for drop-in mutexes without a record", id.PID, v.MoreWaiters))
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
