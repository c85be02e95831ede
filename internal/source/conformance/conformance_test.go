// Package conformance runs the conformance suite of lock sources
// (lockstate/lockstatetest) on lockreg's source, the drop-in's, the
// kernel's file locks' and the memory reader's (goprocsrc), each scenario
// built by real processes: children of this test binary that join a run
// through the probe, take lockreg locks, drop-in mutexes or file locks,
// block on them, and are SIGKILLed; and a plain Go program
// (testdata/syncprog) whose sync locks are read from its memory.
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
	"github.com/lockwatch/lockwatch/internal/source/filelocksrc"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	lwsync "github.com/lockwatch/lockwatch/sync"
	"golang.org/x/sys/unix"
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

// TestFileLocks: the kernel's file locks' source passes the suite, its
// locks flock(2) and OFD locks of child processes on files of the test.
func TestFileLocks(t *testing.T) { lockstatetest.Run(t, fileHarness{}) }

// TestDropin: the drop-in's source passes the suite, its mutexes those of
// one process of the run, and its cycle through two kinds a loop between a
// drop-in mutex and a lockreg lock.
func TestDropin(t *testing.T) { lockstatetest.Run(t, harness{dropin: true}) }

// child is a process of the run: the probe (started by its import, from
// LOCKWATCH_DIR) joined the run; it takes the locks its role says, says
// "ready" once it holds what it must hold, and waits for a line on stdin
// before it goes on to block.
func child(role []string) {
	if role[0] == "file" {
		fileChild(role[1:])
		return
	}
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
	cmd.Env = append(os.Environ(), roleEnv+"="+strings.Join(role, " "))
	if role[0] != "file" { // a file lock's process joins no run
		cmd.Env = append(cmd.Env, probe.EnvDir+"="+dir)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	startReady(t, cmd)
	return &proc{cmd: cmd, stdin: stdin, id: procid.ID{PID: cmd.Process.Pid}}
}

// startReady starts cmd, killed at the test's end, and waits for the
// "ready" it prints once it holds what it must.
func startReady(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Stderr = os.Stderr
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
		t.Fatalf("%v: %q, %v; want ready", cmd.Args, line, err)
	}
	go io.Copy(io.Discard, out) //nolint:errcheck // drains what it may print
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

// fileChild takes file locks: each argument is MODE:PATH, MODE one of
// flock-ex, flock-sh, ofd-ex (the whole file); the first ones before a
// "|" are taken, then "ready" is said, and on a line the rest are waited
// for. Each lock takes an open file description of its own, so that a
// process waits for a lock it holds through another one.
func fileChild(args []string) {
	take := func(a string) {
		mode, path, _ := strings.Cut(a, ":")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		switch mode {
		case "flock-ex":
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		case "flock-sh":
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
		case "ofd-ex":
			lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
			err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, &lk)
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	in := bufio.NewReader(os.Stdin)
	waiting := false
	for _, a := range args {
		if a == "|" {
			fmt.Println("ready")
			if _, err := in.ReadString('\n'); err != nil {
				os.Exit(0)
			}
			waiting = true
			continue
		}
		take(a)
	}
	if !waiting {
		fmt.Println("ready")
	}
	select {}
}

type fileHarness struct{}

func (fileHarness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	dir := t.TempDir()
	fa, fb := dir+"/a", dir+"/b"
	file := func(args ...string) *proc { return start(t, dir, append([]string{"file"}, args...)...) }
	var src *filelocksrc.Source
	var snap *lockstate.Snapshot // the last read
	setup := &lockstatetest.Setup{}
	// keyOf finds the lock on path in the last read.
	keyOf := func(path string) lockstate.Key {
		for _, l := range snap.Locks {
			if l.Name == path || strings.HasPrefix(l.Name, path+" ") { // an OFD lock's name adds its range
				return l.Key()
			}
		}
		t.Fatalf("no lock on %s in %+v", path, snap.Locks)
		return lockstate.Key{}
	}
	// waiters reads src until it shows n waiters in all, each older than age.
	waiters := func(n int, age time.Duration) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var err error
			if snap, err = src.Read(context.Background()); err != nil { // a read takes 0.1-0.6 s
				t.Fatal(err)
			}
			got, young := 0, false
			for _, l := range snap.Locks {
				got += len(l.Waiters)
				for _, w := range l.Waiters {
					young = young || time.Since(w.Since) <= age
				}
			}
			if got >= n && !young {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters; want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	switch s {
	case lockstatetest.Cycle, lockstatetest.CycleKinds:
		second := "flock-ex:" + fb
		if s == lockstatetest.CycleKinds {
			second = "ofd-ex:" + fb
		}
		p, q := file("flock-ex:"+fa, "|", second), file(second, "|", "flock-ex:"+fa)
		p.goOn(t)
		q.goOn(t)
		src = filelocksrc.New(p.id.PID)
		waiters(2, 0)
		setup.Locks, setup.Loop = []lockstate.Key{keyOf(fa), keyOf(fb)}, []procid.ID{p.id, q.id}
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		p, q := file("flock-ex:"+fa), file("|", "flock-ex:"+fa)
		q.goOn(t)
		src = filelocksrc.New(p.id.PID)
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = 50 * time.Millisecond
		}
		waiters(1, 2*setup.StuckAfter)
		setup.Lock, setup.Holder, setup.Waiter = keyOf(fa), p.id, q.id
	case lockstatetest.Readers:
		p, q := file("flock-sh:"+fa), file("flock-sh:"+fa)
		w := file("|", "flock-ex:"+fa)
		w.goOn(t)
		src = filelocksrc.New(p.id.PID)
		waiters(1, 0)
		setup.Lock, setup.Holder = keyOf(fa), q.id
	case lockstatetest.SelfDeadlock:
		p := file("flock-ex:"+fa, "|", "flock-ex:"+fa)
		p.goOn(t)
		src = filelocksrc.New(p.id.PID)
		waiters(1, 0)
		setup.Lock, setup.Holder = keyOf(fa), p.id
	case lockstatetest.DeadHolder:
		return nil, lockstatetest.Cannot("the kernel releases a dead process's file locks")
	case lockstatetest.LostLock:
		return nil, lockstatetest.Cannot("nothing takes a file lock from a live holder")
	default:
		return nil, lockstatetest.Cannot("unknown scenario")
	}
	setup.Sources = report.Sources{Locks: []lockstate.Source{src}, Host: report.LocalHost{}}
	return setup, nil
}
