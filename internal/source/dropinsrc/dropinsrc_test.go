package dropinsrc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

var t0 = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// TestRead converts the probes' views: kinds, names (an unnamed mutex
// carries its id, a name given twice in the run its pid), readers, waiters
// and their stacks; a process without a probe is skipped, a failing probe
// noted, an exited process not asked.
func TestRead(t *testing.T) {
	a, b, c, d := procid.ID{PID: 10, Start: 1}, procid.ID{PID: 20, Start: 2}, procid.ID{PID: 30, Start: 3}, procid.ID{PID: 40, Start: 4}
	site := stackdump.Frame{Func: "main.f", File: "f.go", Line: 3}
	views := map[procid.ID]*probeclient.MutexView{
		a: {Live: 7, Mutexes: []probeclient.Mutex{
			{ID: 1, Kind: "mutex", Name: "queue.buf", Named: true,
				Holder:  &probeclient.MutexHolder{Goroutine: 7, Site: site, Since: t0},
				Waiters: []probeclient.MutexWaiter{{Goroutine: 8, Write: true, Stack: []stackdump.Frame{site}, Since: t0}}},
			{ID: 2, Kind: "rwmutex", Name: "main.g g.go:9",
				Readers:     []probeclient.MutexHolder{{Goroutine: 9, Site: site, Since: t0}, {Goroutine: 11, Site: site, Since: t0}},
				MoreReaders: 3,
				Waiters:     []probeclient.MutexWaiter{{Goroutine: 12, Write: false, Since: t0}}},
		}},
		b: {Mutexes: []probeclient.Mutex{{ID: 1, Kind: "mutex", Name: "queue.buf", Named: true,
			Holder: &probeclient.MutexHolder{Goroutine: 3, Site: site, Since: t0}}}, MoreWaiters: 2, Live: 1},
	}
	var mu sync.Mutex // Read asks the probes at once
	asked := map[procid.ID]bool{}
	src := Source{Dir: "run",
		Processes: func(string) ([]arena.Process, error) {
			return []arena.Process{
				{PID: a.PID, Start: a.Start, State: arena.ProcRunning},
				{PID: b.PID, Start: b.Start, State: arena.ProcRunning},
				{PID: c.PID, Start: c.Start, State: arena.ProcRunning},
				{PID: d.PID, Start: d.Start, State: arena.ProcExited},
			}, nil
		},
		Ask: func(_ context.Context, _ string, id procid.ID, _ time.Duration) (*probeclient.MutexView, error) {
			mu.Lock()
			asked[id] = true
			mu.Unlock()
			switch id {
			case c:
				return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			case a, b:
				return views[id], nil
			}
			return nil, errors.New("probe: unknown op \"mutexes\"")
		},
	}
	s, err := src.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if asked[d] {
		t.Error("an exited process was asked")
	}
	var names []string
	for _, l := range s.Locks {
		names = append(names, l.Kind+":"+l.Name)
	}
	want := []string{"mutex:queue.buf (pid 10)", "rwmutex:main.g g.go:9 #2", "mutex:queue.buf (pid 20)"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("locks %v; want %v", names, want)
	}
	q := s.Locks[0]
	if len(q.Holders) != 1 || q.Holders[0].ID != a || q.Holders[0].Goroutine != 7 || q.Holders[0].Read ||
		len(q.Waiters) != 1 || q.Waiters[0].Goroutine != 8 || q.Waiters[0].Read {
		t.Errorf("queue.buf of pid 10: %+v", q)
	}
	if fs, ok := s.Stacks.Stack(a, q.Waiters[0].Stack); !ok || len(fs) != 1 || fs[0] != site {
		t.Errorf("waiter stack %v, %v; want [%v]", fs, ok, site)
	}
	if fs, ok := s.Stacks.Stack(b, q.Waiters[0].Stack); ok {
		t.Errorf("pid 20 resolves pid 10's stack id: %v", fs)
	}
	rw := s.Locks[1]
	if len(rw.Holders) != 2 || !rw.Holders[0].Read || !rw.Holders[1].Read || len(rw.Waiters) != 1 || !rw.Waiters[0].Read {
		t.Errorf("rwmutex: %+v", rw)
	}
	// pid 10 has 7 mutexes, 2 held or awaited; pid 20 its 1, held.
	if n := s.Unlisted[FreeUnlisted]; n != 5 || len(s.Unlisted) != 1 {
		t.Errorf("unlisted %v; want %d %s", s.Unlisted, 5, FreeUnlisted)
	}
	notes := fmt.Sprint(s.Notes)
	for _, w := range []string{"3 more readers", "pid 20: 2 goroutines wait for drop-in mutexes without a record"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes %q lack %q", notes, w)
		}
	}
	if strings.Contains(notes, "pid 30") {
		t.Errorf("a process without a probe was noted: %q", notes)
	}
}

// TestSkipsNoMutexes: a process whose probe keeps its no-mutexes file is
// not asked; the others are, and a file that is not a regular one (or that
// cannot be looked at) does not stop the asking.
func TestSkipsNoMutexes(t *testing.T) {
	dir := t.TempDir()
	none, some, odd := procid.ID{PID: 10, Start: 1}, procid.ID{PID: 20, Start: 2}, procid.ID{PID: 30, Start: 3}
	mark := func(id procid.ID) string {
		_, _, base := arena.ProcessFiles(dir, id)
		return filepath.Join(dir, probeclient.NoMutexesFile(base))
	}
	if err := os.WriteFile(mark(none), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mark(odd), 0o700); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := map[procid.ID]bool{}
	src := Source{Dir: dir,
		Processes: func(string) ([]arena.Process, error) {
			return []arena.Process{{PID: none.PID, Start: none.Start}, {PID: some.PID, Start: some.Start}, {PID: odd.PID, Start: odd.Start}}, nil
		},
		Ask: func(_ context.Context, _ string, id procid.ID, _ time.Duration) (*probeclient.MutexView, error) {
			mu.Lock()
			defer mu.Unlock()
			asked[id] = true
			return &probeclient.MutexView{PID: id.PID, Start: id.Start}, nil
		},
	}
	if _, err := src.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asked[none] || !asked[some] || !asked[odd] {
		t.Errorf("asked %v; want pids 20 and 30, not 10 (its probe says it has no mutex)", asked)
	}
}

// TestReadConcurrency: of 20 processes, no more than Concurrency probes
// are asked at once, and every one is asked.
func TestReadConcurrency(t *testing.T) {
	const procs, limit = 20, 3
	const quiescent = 50 * time.Millisecond // Read would have asked more by then
	var ps []arena.Process
	for i := range procs {
		ps = append(ps, arena.Process{PID: 100 + i, Start: 1, State: arena.ProcRunning})
	}
	gate := make(chan struct{})
	var mu sync.Mutex
	busy, most, asked := 0, 0, 0
	src := Source{Dir: "run", Concurrency: limit,
		Processes: func(string) ([]arena.Process, error) { return ps, nil },
		Ask: func(context.Context, string, procid.ID, time.Duration) (*probeclient.MutexView, error) {
			mu.Lock()
			busy++
			asked++
			most = max(most, busy)
			mu.Unlock()
			<-gate
			mu.Lock()
			busy--
			mu.Unlock()
			return &probeclient.MutexView{}, nil
		}}
	done := make(chan error, 1)
	go func() {
		_, err := src.Read(context.Background())
		done <- err
	}()
	now := func() int {
		mu.Lock()
		defer mu.Unlock()
		return busy
	}
	for deadline := time.Now().Add(10 * time.Second); now() < limit; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes asked at once after 10s; want %d", now(), limit)
		}
	}
	time.Sleep(quiescent) // asserting that no more are asked while these wait
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if most != limit || asked != procs {
		t.Errorf("at most %d probes at once, %d asked; want %d and %d", most, asked, limit, procs)
	}
}

// TestAskBothFallback: a probe that answers the combined request with its
// mutexes alone (one older than the request, or whose two answers would not
// fit in one) is asked for its lock-order edges on their own, and both
// reach the snapshot. The probe here is a stand-in on the process's control
// socket that speaks the protocol and records the requests.
func TestAskBothFallback(t *testing.T) {
	dir := t.TempDir()
	id := procid.ID{PID: 4242, Start: 7}
	ln, err := net.Listen("unix", probeclient.SocketPath(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var requests []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var n [4]byte
			if _, err := io.ReadFull(c, n[:]); err != nil {
				c.Close()
				continue
			}
			q := make([]byte, binary.BigEndian.Uint32(n[:]))
			_, _ = io.ReadFull(c, q)
			mu.Lock()
			requests = append(requests, string(q))
			mu.Unlock()
			ans := `{"v":1,"ok":true,"mutexes":{"pid":4242,"start":7,"live":1,"mutexes":[]}}`
			if strings.Contains(string(q), `"op":"orders"`) {
				ans = `{"v":1,"ok":true,"orders":{"pid":4242,"start":7,"capacity":4096,"edges":[{"from":{"id":1,"kind":"mutex","name":"a","named":true},"to":{"id":2,"kind":"mutex","name":"b","named":true},"goroutine":9}]}}`
			}
			binary.BigEndian.PutUint32(n[:], uint32(len(ans)))
			_, _ = c.Write(append(n[:], ans...))
			c.Close()
		}
	}()
	src := Source{Dir: dir, Timeout: 5 * time.Second,
		Processes: func(string) ([]arena.Process, error) {
			return []arena.Process{{PID: id.PID, Start: id.Start, State: arena.ProcRunning}}, nil
		}}
	s, err := src.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 2 || !strings.Contains(requests[0], `"orders":true`) || !strings.Contains(requests[1], `"op":"orders"`) {
		t.Errorf("requests %q; want the combined one, then orders alone", requests)
	}
	if len(s.Orders) != 1 || s.Unlisted[FreeUnlisted] != 1 {
		t.Errorf("orders %+v, unlisted %v; want the stand-in's edge and its free mutex", s.Orders, s.Unlisted)
	}
}

// TestStoodDownUnreadable: a process whose probe stands down (its mark in
// the run, no socket) and whose drop-in records cannot be read from its
// memory (here an arena file that is not one) is noted with what failed,
// not as read from its memory.
func TestStoodDownUnreadable(t *testing.T) {
	dir := t.TempDir()
	st, err := proc.ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	id := procid.ID{PID: st.PID, Start: st.Start}
	if err := os.WriteFile(filepath.Join(dir, inproc.ArenaFile(id.PID)), []byte("not an arena"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, base := arena.ProcessFiles(dir, id)
	if err := os.WriteFile(filepath.Join(dir, probeclient.DownFile(base)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src := Source{Dir: dir, Timeout: time.Second,
		Processes: func(string) ([]arena.Process, error) {
			return []arena.Process{{PID: id.PID, Start: id.Start, State: arena.ProcRunning}}, nil
		}}
	s, err := src.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var down []string
	for _, n := range s.Notes {
		if strings.Contains(n, "probe stands down") {
			down = append(down, n)
		}
	}
	if len(down) != 1 || !strings.Contains(down[0], "could not be read from its memory either: ") || strings.Contains(down[0], "were read") {
		t.Errorf("notes %q; want one that says the probe stands down and what failed", s.Notes)
	}
}
