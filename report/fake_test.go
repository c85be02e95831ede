package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// The fake backend: locks held in memory by parties on several hosts, with
// any number of readers per lock. It exists only for these tests, to prove
// that the diagnosis knows nothing of lockreg.

const fakeKind = "fake-rw"

// ownerDied is the fake's own proof reason, as lockreg's source names the
// kernel's mark: the report shows a backend's reason as it is.
const ownerDied lockstate.Reason = "owner-died"

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Parties: A, B, C on this machine, R on host "db2", S on host "db3".
var (
	pA = procid.ID{PID: 100, Start: 1000}
	pB = procid.ID{PID: 200, Start: 2000}
	pC = procid.ID{PID: 300, Start: 3000}
	pR = procid.ID{Host: "db2", PID: 100, Start: 7}
	pS = procid.ID{Host: "db3", PID: 400, Start: 9}
)

func g(id procid.ID, gid int64) lockstate.Party { return lockstate.Party{ID: id, Goroutine: gid} }

// fakeLock builds a lock: holders and waiters are written h(party) for a
// writer, r(party) for a reader.
type fakeLock struct {
	name     string
	holders  []lockstate.Holder
	waiters  []lockstate.Waiter
	abandon  *lockstate.Proof
	recovery string
}

func wr(p lockstate.Party, since time.Time) lockstate.Holder {
	return lockstate.Holder{Party: p, Since: since, Stack: uint64(p.Goroutine)}
}

func rd(p lockstate.Party, since time.Time) lockstate.Holder {
	return lockstate.Holder{Party: p, Read: true, Since: since, Stack: uint64(p.Goroutine)}
}

func wantW(p lockstate.Party, since time.Time) lockstate.Waiter {
	return lockstate.Waiter{Party: p, Since: since, Stack: 1000 + uint64(p.Goroutine)}
}

func wantR(p lockstate.Party, since time.Time) lockstate.Waiter {
	return lockstate.Waiter{Party: p, Read: true, Since: since, Stack: 1000 + uint64(p.Goroutine)}
}

// fakeSnap builds a snapshot of fake locks; every party named gets a
// process entry, with the statuses its backend knows.
func fakeSnap(known map[procid.ID]procid.Status, locks ...fakeLock) *lockstate.Snapshot {
	s := &lockstate.Snapshot{Run: "fake:test", Taken: t0, Stacks: fakeStacks{}, WaitLabel: "fake.wait"}
	seen := map[procid.ID]bool{}
	add := func(id procid.ID) {
		if !seen[id] {
			seen[id] = true
			s.Processes = append(s.Processes, lockstate.Process{ID: id, Role: fmt.Sprintf("r%d", id.PID),
				Started: t0.Add(-time.Hour), Status: known[id]})
		}
	}
	for _, fl := range locks {
		l := lockstate.Lock{Kind: fakeKind, Name: fl.name, Holders: fl.holders, Waiters: fl.waiters,
			Abandoned: fl.abandon, Recovery: fl.recovery}
		for _, h := range fl.holders {
			add(h.ID)
			s.Events = append(s.Events, lockstate.Event{Seq: uint64(len(s.Events)), Time: h.Since, Kind: "acquire",
				Lock: l.Key(), Party: h.Party})
		}
		for _, w := range fl.waiters {
			add(w.ID)
			s.Events = append(s.Events, lockstate.Event{Seq: uint64(len(s.Events)), Time: w.Since, Kind: "wait",
				Lock: l.Key(), Party: w.Party})
		}
		s.Locks = append(s.Locks, l)
	}
	slices.SortStableFunc(s.Events, func(a, b lockstate.Event) int { return a.Time.Compare(b.Time) })
	return s
}

// fakeStacks resolves every stack id to a frame that names it:
// main.site<id> in site.go at line id. Ids above 5000 are unknown.
type fakeStacks struct{}

func (fakeStacks) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) {
	if id > 5000 {
		return nil, false
	}
	return []stackdump.Frame{
		{Func: "github.com/lockwatch/lockwatch/lockreg.(*Mutex).Lock", File: "mutex.go", Line: 1},
		{Func: fmt.Sprintf("main.site%d", id), File: "site.go", Line: int(id)},
	}, true
}

// fakeSource returns its snapshots in turn, the last again and again.
type fakeSource struct {
	mu    sync.Mutex
	snaps []*lockstate.Snapshot
	n     int
	err   error
}

func (f *fakeSource) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	s := f.snaps[min(f.n, len(f.snaps)-1)]
	f.n++
	return s, nil
}

// fakeHost answers for this machine from a table (missing: alive), and
// fails the test's expectations if asked about another machine's process.
type fakeHost struct {
	status map[procid.ID]procid.Status
	fail   map[procid.ID]bool

	mu     sync.Mutex
	remote []procid.ID // remote ids it was asked about: must stay empty
}

func (h *fakeHost) Check(id procid.ID) (procid.Status, error) {
	if id.Host != "" {
		h.mu.Lock()
		h.remote = append(h.remote, id)
		h.mu.Unlock()
		return procid.Gone, nil // the worst answer: a live remote process "dead"
	}
	if h.fail[id] {
		return procid.Unknown, errors.New("too many open files")
	}
	if st, ok := h.status[id]; ok {
		return st, nil
	}
	return procid.Alive, nil
}

func (h *fakeHost) Command(pid int) string { return fmt.Sprintf("cmd-%d", pid) }

// batchFake is a fakeHost that checks all processes in one call.
type batchFake struct {
	*fakeHost
	calls int
}

func (b *batchFake) CheckAll(ids []procid.ID) map[procid.ID]procid.Status {
	b.calls++
	out := make(map[procid.ID]procid.Status)
	for _, id := range ids {
		out[id], _ = b.Check(id)
	}
	return out
}

// fakeProbes answers goroutine profiles, live goroutines (as a trace
// would: only those asked for) and text dumps from tables, and counts how
// many are asked at once.
type fakeProbes struct {
	prof    map[procid.ID]*stackdump.Profile
	live    map[procid.ID]*stackdump.Snapshot
	liveErr error // what Goroutines answers for a process not in live
	text    map[procid.ID]*stackdump.Snapshot
	err     error
	// gate, if set, holds each answer until it is closed.
	gate chan struct{}

	mu          sync.Mutex
	asked       []procid.ID
	busy, most  int // answers in progress, the most at once
	askedTraces []procid.ID
}

func (p *fakeProbes) note(id procid.ID) (done func()) {
	p.mu.Lock()
	p.asked = append(p.asked, id)
	p.busy++
	p.most = max(p.most, p.busy)
	p.mu.Unlock()
	if p.gate != nil {
		<-p.gate
	}
	return func() {
		p.mu.Lock()
		p.busy--
		p.mu.Unlock()
	}
}

func (p *fakeProbes) Profile(ctx context.Context, id procid.ID) (*stackdump.Profile, error) {
	defer p.note(id)()
	if pr, ok := p.prof[id]; ok {
		return pr, nil
	}
	return nil, cmpErr(p.err, errors.New("connection refused"))
}

func (p *fakeProbes) Goroutines(ctx context.Context, id procid.ID, goroutines []int64) (*stackdump.Snapshot, error) {
	defer p.note(id)()
	p.mu.Lock()
	p.askedTraces = append(p.askedTraces, id)
	p.mu.Unlock()
	s, ok := p.live[id]
	if !ok {
		return nil, cmpErr(p.liveErr, cmpErr(p.err, errors.New("connection refused")))
	}
	out := &stackdump.Snapshot{}
	for _, g := range s.Goroutines {
		if slices.Contains(goroutines, g.ID) {
			out.Goroutines = append(out.Goroutines, g)
		}
	}
	return out, nil
}

func (p *fakeProbes) Text(ctx context.Context, id procid.ID) (*stackdump.Snapshot, error) {
	defer p.note(id)()
	if s, ok := p.text[id]; ok {
		return s, nil
	}
	return nil, cmpErr(p.err, errors.New("connection refused"))
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// diagnoseFake diagnoses the snapshots with the fake host and probes.
func diagnoseFake(host *fakeHost, probes Stacks, snaps ...*lockstate.Snapshot) (*Report, error) {
	return diagnoseFakeWith(Options{}, host, probes, snaps...)
}

// diagnoseFakeWith is diagnoseFake with options (StuckAfter 10s unless set).
func diagnoseFakeWith(opts Options, host *fakeHost, probes Stacks, snaps ...*lockstate.Snapshot) (*Report, error) {
	src := Sources{Locks: []lockstate.Source{&fakeSource{snaps: snaps}}, Host: host, Stacks: probes}
	if opts.StuckAfter == 0 {
		opts.StuckAfter = 10 * time.Second
	}
	return Diagnose(context.Background(), src, opts)
}
