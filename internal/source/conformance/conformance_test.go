// Package conformance runs the conformance suite of lock sources
// (lockstate/lockstatetest) on lockreg's source and on the drop-in's,
// each scenario built by real processes of a real run: children of this
// test binary that join the run through the probe, take lockreg locks and
// drop-in mutexes, block on them, and are SIGKILLed.
package conformance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

const roleEnv = "LOCKWATCH_CONFORMANCE_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		child(strings.Fields(role))
		return
	}
	os.Exit(m.Run())
}

// TestLockreg: lockreg's source passes the suite, its locks taken by
// processes of one run.
func TestLockreg(t *testing.T) { lockstatetest.Run(t, harness{dropin: false}) }

// TestDropin: the drop-in's source passes the suite, its mutexes those of
// one process of the run, and its cycle through two kinds a loop between a
// drop-in mutex and a lockreg lock.
func TestDropin(t *testing.T) { lockstatetest.Run(t, harness{dropin: true}) }

// child is a process of the run: the probe (started by its import, from
// LOCKWATCH_DIR) joined the run; it takes the locks its role says, says
// "ready" once it holds what it must hold, and waits for a line on stdin
// before it goes on to block.
func child(role []string) {
	a := probe.Running()
	if a == nil {
		os.Exit(1) // the probe said why on stderr
	}
	reg := a.Registry()
	in := bufio.NewReader(os.Stdin)
	ready := func() {
		fmt.Println("ready")
		if _, err := in.ReadString('\n'); err != nil {
			os.Exit(0) // the parent is gone
		}
	}
	lockreg := func(name string) {
		m, err := reg.Mutex(name)
		if err == nil {
			err = m.Lock(context.Background())
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	named := func(name string) *lwsync.Mutex {
		m := new(lwsync.Mutex)
		lwsync.SetName(m, name)
		return m
	}
	block := func() { select {} }
	switch role[0] {
	case "hold": // hold lockreg lock A, then nothing
		lockreg(role[1])
		ready()
		block()
	case "holdwait": // hold lockreg lock A; on a line, wait for B
		lockreg(role[1])
		ready()
		lockreg(role[2])
	case "wait": // on a line, wait for lockreg lock A
		ready()
		lockreg(role[1])
	case "self": // hold lockreg lock A; on a line, wait for it again
		lockreg(role[1])
		ready()
		lockreg(role[1])
	case "dhold": // a goroutine holds drop-in M; on a line, another waits for it
		m := named(role[1])
		held := make(chan struct{})
		go func() { m.Lock(); close(held); block() }()
		<-held
		ready()
		m.Lock()
	case "dcycle": // goroutines hold drop-in A and B; on a line, each waits for the other's
		a, b := named(role[1]), named(role[2])
		cross(a.Lock, a.Lock, b.Lock, b.Lock, ready)
	case "dkinds": // a goroutine holds drop-in M, another lockreg lock A; on a line, each waits for the other's
		m := named(role[1])
		cross(m.Lock, m.Lock, func() { lockreg(role[2]) }, func() { lockreg(role[2]) }, ready)
	case "dreaders": // two goroutines read-hold drop-in RWMutex M; on a line, a writer waits for them
		rw := new(lwsync.RWMutex)
		lwsync.SetName(rw, role[1])
		held := make(chan struct{})
		for range 2 {
			go func() { rw.RLock(); held <- struct{}{}; block() }()
		}
		<-held
		<-held
		ready()
		rw.Lock()
	case "dself": // a goroutine holds drop-in M; on a line, it locks M again
		m := named(role[1])
		m.Lock()
		ready()
		m.Lock()
	}
	block()
}

// cross has one goroutine take a, another b; once both hold theirs, ready
// returns, and each takes the other's: a cycle of two goroutines.
func cross(lockA, againA, lockB, againB func(), ready func()) {
	held := make(chan struct{})
	goOn := make(chan struct{})
	go func() { lockA(); held <- struct{}{}; <-goOn; againB() }()
	go func() { lockB(); held <- struct{}{}; <-goOn; againA() }()
	<-held
	<-held
	ready()
	close(goOn)
	select {}
}

type harness struct{ dropin bool }

// proc is a child process of the run.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	id    procid.ID
}

// start starts a child with role in the run dir and waits for its "ready".
func start(t *testing.T, dir string, role ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+strings.Join(role, " "), probe.EnvDir+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("child %v: %q, %v; want ready", role, line, err)
	}
	go io.Copy(io.Discard, out) //nolint:errcheck // drains what it may print
	return &proc{cmd: cmd, stdin: stdin, id: procid.ID{PID: cmd.Process.Pid}}
}

// goOn tells the child to go on to block.
func (p *proc) goOn(t *testing.T) {
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
}

// waitFor reads the sources until every lock of want has as many waiters
// as want says, and each of them has waited longer than age.
func waitFor(t *testing.T, srcs []lockstate.Source, want map[lockstate.Key]int, age time.Duration) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := map[lockstate.Key]int{}
		young := false
		for _, s := range srcs {
			snap, err := s.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range snap.Locks {
				got[l.Key()] = len(l.Waiters)
				for _, w := range l.Waiters {
					young = young || time.Since(w.Since) <= age
				}
			}
		}
		done := !young
		for k, n := range want {
			done = done && got[k] >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiters %v; want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h harness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // a run directory is private
		t.Fatal(err)
	}
	srcs := []lockstate.Source{lockregsrc.New(dir)}
	if h.dropin {
		srcs = append(srcs, dropinsrc.New(dir, 10*time.Second))
	}
	setup := &lockstatetest.Setup{}
	defer func() {
		// The host proves membership of the run, once its arena exists.
		setup.Sources = report.Sources{Locks: srcs, Host: liveness.ForRun(dir)}
	}()
	a := lockstate.Key{Kind: lockregsrc.Kind, Name: "a"}
	b := lockstate.Key{Kind: lockregsrc.Kind, Name: "b"}
	m := lockstate.Key{Kind: "mutex", Name: "m"}
	n := lockstate.Key{Kind: "mutex", Name: "n"}
	if h.dropin {
		return h.dropinScenario(t, s, dir, setup, srcs, a, m, n)
	}
	switch s {
	case lockstatetest.DeadHolder:
		holder := start(t, dir, "hold", "a")
		waiter := start(t, dir, "wait", "a")
		waiter.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{a: 1}, 0)
		if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = holder.cmd.Wait() // reaped: gone
		setup.Lock, setup.Holder, setup.Waiter = a, holder.id, waiter.id
	case lockstatetest.Cycle:
		p, q := start(t, dir, "holdwait", "a", "b"), start(t, dir, "holdwait", "b", "a")
		p.goOn(t)
		q.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{a: 1, b: 1}, 0)
		setup.Locks, setup.Loop = []lockstate.Key{a, b}, []procid.ID{p.id, q.id}
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		holder := start(t, dir, "hold", "a")
		waiter := start(t, dir, "wait", "a")
		waiter.goOn(t)
		setup.Lock, setup.Holder, setup.Waiter = a, holder.id, waiter.id
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = 50 * time.Millisecond
		}
		waitFor(t, srcs, map[lockstate.Key]int{a: 1}, 2*setup.StuckAfter)
	case lockstatetest.SelfDeadlock:
		p := start(t, dir, "self", "a")
		p.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{a: 1}, 0)
		setup.Lock, setup.Holder = a, p.id
	case lockstatetest.LostLock:
		return nil, lockstatetest.Cannot("nothing takes a lockreg lock from its holder: a dead holder's lock stays its own, marked OWNER_DIED")
	case lockstatetest.Readers:
		return nil, lockstatetest.Cannot("a lockreg lock is exclusive: it has no readers")
	case lockstatetest.CycleKinds:
		return nil, lockstatetest.Cannot("lockreg's source reads one kind of lock; the drop-in's harness builds the loop through a lockreg lock and a drop-in mutex")
	default:
		return nil, lockstatetest.Cannot("unknown scenario")
	}
	return setup, nil
}

func (h harness) dropinScenario(t *testing.T, s lockstatetest.Scenario, dir string, setup *lockstatetest.Setup, srcs []lockstate.Source, a, m, n lockstate.Key) (*lockstatetest.Setup, error) {
	switch s {
	case lockstatetest.Cycle:
		p := start(t, dir, "dcycle", "m", "n")
		p.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{m: 1, n: 1}, 0)
		setup.Locks, setup.Loop = []lockstate.Key{m, n}, []procid.ID{p.id}
	case lockstatetest.CycleKinds:
		p := start(t, dir, "dkinds", "m", "a")
		p.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{m: 1, a: 1}, 0)
		setup.Locks, setup.Loop = []lockstate.Key{m, a}, []procid.ID{p.id}
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		p := start(t, dir, "dhold", "m")
		p.goOn(t)
		setup.Lock, setup.Holder, setup.Waiter = m, p.id, p.id
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = 50 * time.Millisecond
		}
		waitFor(t, srcs, map[lockstate.Key]int{m: 1}, 2*setup.StuckAfter)
	case lockstatetest.Readers:
		rw := lockstate.Key{Kind: "rwmutex", Name: "rw"}
		p := start(t, dir, "dreaders", "rw")
		p.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{rw: 1}, 0)
		setup.Lock, setup.Holder = rw, p.id
	case lockstatetest.SelfDeadlock:
		p := start(t, dir, "dself", "m")
		p.goOn(t)
		waitFor(t, srcs, map[lockstate.Key]int{m: 1}, 0)
		setup.Lock, setup.Holder = m, p.id
	case lockstatetest.DeadHolder:
		return nil, lockstatetest.Cannot("a drop-in mutex lives in its process's memory: its waiters die with its holder")
	case lockstatetest.LostLock:
		return nil, lockstatetest.Cannot("nothing takes a drop-in mutex from its holder")
	default:
		return nil, lockstatetest.Cannot("unknown scenario")
	}
	return setup, nil
}
