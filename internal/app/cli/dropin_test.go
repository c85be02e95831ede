package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// The drop-in mutexes seen by lockwatch attach: a program that only
// changed its import line, deadlocked in each way, diagnosed from outside.

// started returns the probe that init started from LOCKWATCH_DIR.
func started() (*probe.Agent, error) {
	if a := probe.Running(); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("no probe running with %s=%q", probe.EnvDir, os.Getenv(probe.EnvDir))
}

// waitMutexes polls the process's own probe until its drop-in mutexes
// have n waiters in all; past 3 x probablyStillBlocked it says how many it
// saw (the child then prints an error line, which fails its test, rather
// than hanging it).
func waitMutexes(a *probe.Agent, n int) error {
	c := &probeclient.Client{Path: a.SocketPath()}
	deadline := time.Now().Add(3 * probablyStillBlocked)
	for {
		v, err := c.Mutexes(context.Background())
		if err != nil {
			return err
		}
		w := 0
		for _, m := range v.Mutexes {
			w += len(m.Waiters)
		}
		if w >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the probe's view never showed %d waiters: %d mutexes, %d waiters, %d more without a record", n, len(v.Mutexes), w, v.MoreWaiters)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdXRole takes the cross-process lock "x" and says "held".
func holdXRole() int {
	a, err := started()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	m, err := a.Registry().Mutex("x")
	if err == nil {
		err = m.Lock(context.Background())
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("held")
	awake()
	select {}
}

// chainRole: goroutine A holds the drop-in mutex "queue.buf" and waits for
// the cross-process lock "x"; goroutine B waits for "queue.buf". It says
// "chained A B" once both wait.
func chainRole() int {
	a, err := started()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	x, err := a.Registry().Mutex("x")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var buf lwsync.Mutex
	lwsync.SetName(&buf, "queue.buf")
	ids := make(chan int64, 2)
	go func() {
		buf.Lock()
		ids <- goid()
		_ = x.Lock(context.Background()) // x's holder is dead: waits for ever (Stall)
	}()
	ga := <-ids
	go func() { ids <- goid(); buf.Lock() }()
	gb := <-ids
	if err := waitMutexes(a, 1); err != nil {
		fmt.Println("error", err)
		return 1
	}
	for deadline := time.Now().Add(3 * probablyStillBlocked); ; {
		s, err := arena.ReadSnapshot(a.Dir())
		if err == nil && len(s.Waiters) > 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("error: the run never showed the wait for x:", err)
			return 1
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("chained", ga, gb)
	awake()
	select {}
}

// selfRole deadlocks one goroutine on itself: "self" locks a Mutex it
// holds; "rwtrap" read-locks an RWMutex it read-holds while a writer
// waits; or two on each other: "cycle" (G holds accounts). It says
// "stuck G".
func selfRole(role string) int {
	a, err := started()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ids := make(chan int64, 1)
	var g int64
	switch role {
	case "self":
		var mu lwsync.Mutex
		lwsync.SetName(&mu, "cache")
		go func() {
			mu.Lock()
			ids <- goid()
			mu.Lock()
		}()
		g = <-ids
		if err := waitMutexes(a, 1); err != nil {
			fmt.Println("error", err)
			return 1
		}
	case "cycle":
		var a1, b1 lwsync.Mutex
		lwsync.SetName(&a1, "accounts")
		lwsync.SetName(&b1, "ledger")
		var both lwsync.WaitGroup
		both.Add(2)
		take := func(x, y *lwsync.Mutex) {
			x.Lock()
			ids <- goid()
			both.Done()
			both.Wait()
			y.Lock()
		}
		go take(&a1, &b1)
		g = <-ids
		go take(&b1, &a1)
		<-ids
		if err := waitMutexes(a, 2); err != nil {
			fmt.Println("error", err)
			return 1
		}
	case "rwtrap":
		var rw lwsync.RWMutex
		lwsync.SetName(&rw, "config")
		again := make(chan bool)
		go func() {
			rw.RLock()
			ids <- goid()
			<-again
			rw.RLock()
		}()
		g = <-ids
		go rw.Lock()
		if err := waitMutexes(a, 1); err != nil {
			fmt.Println("error", err)
			return 1
		}
		again <- true
		if err := waitMutexes(a, 2); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	fmt.Println("stuck", g)
	awake()
	select {}
}

// goid is the calling goroutine's id, parsed from its stack header.
func goid() int64 {
	var b [64]byte
	n := runtimeStack(b[:])
	var id int64
	fmt.Sscanf(string(b[:n]), "goroutine %d ", &id)
	return id
}

// attachJSON runs lockwatch attach -o json on pid and decodes the report.
func attachJSON(t *testing.T, pid int) (int, *report.Report) {
	t.Helper()
	code, stdout, stderr := lockwatch(t, "attach", strconv.Itoa(pid), "-o", "json")
	if code != ExitDeadlock && code != ExitOK {
		t.Fatalf("attach: exit %d: %s", code, stderr)
	}
	return code, readReport(t, []byte(stdout))
}

// TestAttachDropInSelfDeadlock: a goroutine locking a Mutex it holds, and
// one read-locking an RWMutex it read-holds while a writer waits, are each
// a self-deadlock naming that goroutine; two goroutines taking two mutexes
// in opposite orders, a cycle.
func TestAttachDropInSelfDeadlock(t *testing.T) {
	for _, c := range []struct{ role, lock, kind string }{
		{"self", "cache", "mutex"},
		{"rwtrap", "config", "rwmutex"},
		{"cycle", "accounts", "mutex"},
	} {
		t.Run(c.role, func(t *testing.T) {
			dir := runDir(t)
			cmd, _, out := child(t, c.role, dir, probe.EnvDir+"="+dir)
			line, _ := out.ReadString('\n')
			var g int64
			if _, err := fmt.Sscanf(line, "stuck %d", &g); err != nil {
				t.Fatalf("child said %q", line)
			}
			code, r := attachJSON(t, cmd.Process.Pid)
			if code != ExitDeadlock || len(r.Findings) == 0 {
				t.Fatalf("exit %d, findings %+v; want a deadlock", code, r.Findings)
			}
			f := r.Findings[0]
			if c.role == "cycle" {
				if f.Kind != report.Cycle || len(f.Cycle) != 2 || f.LockKind != "mutex" || f.Lock != "accounts" || f.Holder == nil || f.Holder.Goroutine != g {
					t.Errorf("finding %+v; want a cycle of 2 over accounts and ledger, accounts held by goroutine %d", f, g)
				}
				return
			}
			if f.Kind != report.SelfDeadlock || f.Lock != c.lock || f.LockKind != c.kind ||
				f.Holder == nil || f.Holder.Goroutine != g || f.Holder.PID != cmd.Process.Pid {
				t.Errorf("finding %+v (holder %+v); want self-deadlock of goroutine %d on %s %q", f, f.Holder, g, c.kind, c.lock)
			}
		})
	}
}

// TestAttachChainThroughBothKinds: a worker dies holding the cross-process
// lock x; goroutine A of another process waits for x holding the drop-in
// mutex queue.buf; goroutine B waits for queue.buf. One report shows the
// chain: the dead holder, A waiting for x, B waiting for queue.buf held by
// A.
func TestAttachChainThroughBothKinds(t *testing.T) {
	dir := runDir(t)
	holder, _, hout := child(t, "hold-x", dir, probe.EnvDir+"="+dir)
	expectLine(t, hout, "held")
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.Wait()
	cmd, _, out := child(t, "chain", dir, probe.EnvDir+"="+dir)
	line, _ := out.ReadString('\n')
	var ga, gb int64
	if _, err := fmt.Sscanf(line, "chained %d %d", &ga, &gb); err != nil {
		t.Fatalf("child said %q", line)
	}
	pid := cmd.Process.Pid
	code, r := attachJSON(t, pid)
	if code != ExitDeadlock || len(r.Findings) == 0 || r.Findings[0].Kind != report.DeadHolder || r.Findings[0].Lock != "x" {
		t.Fatalf("exit %d, findings %+v; want dead-holder on x first", code, r.Findings)
	}
	f := r.Findings[0]
	if f.Holder == nil || f.Holder.PID != holder.Process.Pid {
		t.Errorf("dead holder %+v; want pid %d", f.Holder, holder.Process.Pid)
	}
	if !slices.ContainsFunc(f.Waiters, func(p report.Party) bool { return p.PID == pid && p.Goroutine == ga }) {
		t.Errorf("waiters of x %+v; want pid %d goroutine %d", f.Waiters, pid, ga)
	}
	// queue.buf: held by A, awaited by B, in the same report.
	var held bool
	for _, l := range r.Locks {
		if l.Name == "queue.buf" && l.Kind == "mutex" && l.Holder != nil && l.Holder.PID == pid && l.Holder.Goroutine == ga {
			held = true
		}
	}
	waits := slices.ContainsFunc(r.Waiters, func(w report.WaiterRow) bool {
		return w.Lock == "queue.buf" && w.PID == pid && w.Goroutine == gb
	})
	if !held || !waits {
		t.Errorf("locks %+v, waiters %+v; want queue.buf held by goroutine %d and awaited by %d", r.Locks, r.Waiters, ga, gb)
	}
	// The finding runs the chain to B.
	if len(f.Behind) != 1 || f.Behind[0].PID != pid || f.Behind[0].Goroutine != gb || f.Behind[0].WaitsFor != "queue.buf" {
		t.Errorf("behind the waiters of x: %+v; want goroutine %d waiting for queue.buf", f.Behind, gb)
	}
	if !strings.Contains(f.Summary, `and 1 more behind it (waiting for "queue.buf")`) {
		t.Errorf("summary %q does not name the goroutine behind", f.Summary)
	}
}

func runtimeStack(b []byte) int { return runtime.Stack(b, false) }

// stuckHolderRole: goroutine A holds the drop-in mutex "queue.buf" while
// it blocks writing to a pipe nobody reads; goroutine B waits for it. It
// says "stuck A B".
func stuckHolderRole() int {
	a, err := started()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer r.Close()
	var buf lwsync.Mutex
	lwsync.SetName(&buf, "queue.buf")
	ids := make(chan int64, 2)
	go func() {
		buf.Lock()
		ids <- goid()
		w.Write(make([]byte, 1<<20)) // more than a pipe holds: blocks
	}()
	ga := <-ids
	go func() { ids <- goid(); buf.Lock() }()
	gb := <-ids
	if err := waitMutexes(a, 1); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("stuck", ga, gb)
	awake()
	select {}
}

// TestAttachDropInStuckHolder: a goroutine that holds a drop-in mutex
// while blocked elsewhere is a stuck holder, with what it is doing now.
func TestAttachDropInStuckHolder(t *testing.T) {
	dir := runDir(t)
	cmd, _, out := child(t, "stuck-holder", dir, probe.EnvDir+"="+dir)
	line, _ := out.ReadString('\n')
	var ga, gb int64
	if _, err := fmt.Sscanf(line, "stuck %d %d", &ga, &gb); err != nil {
		t.Fatalf("child said %q", line)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	code, stdout, stderr := lockwatch(t, "attach", pid, "-o", "json", "--stuck-after", "1ns")
	if code != ExitDeadlock {
		t.Fatalf("attach: exit %d: %s", code, stderr)
	}
	r := readReport(t, []byte(stdout))
	if len(r.Findings) == 0 {
		t.Fatal("no finding")
	}
	f := r.Findings[0]
	if f.Kind != report.StuckHolder || f.Lock != "queue.buf" || f.LockKind != "mutex" || f.Holder == nil ||
		f.Holder.Goroutine != ga || len(f.Waiters) != 1 || f.Waiters[0].Goroutine != gb {
		t.Fatalf("finding %+v; want stuck-holder of queue.buf by goroutine %d, waited for by %d", f, ga, gb)
	}
	if !strings.Contains(f.Doing, "Write") && !strings.Contains(f.Doing, "write") {
		t.Errorf("doing %q; want the holder's current stack, blocked writing", f.Doing)
	}
	// The live stacks come from the execution trace (by default) or the
	// text dump (--text-dumps), both with the goroutines' ids.
	for _, tc := range []struct {
		args   []string
		source string
	}{{nil, "probe-trace"}, {[]string{"--text-dumps"}, "probe-text"}} {
		code, stdout, stderr := lockwatch(t, append([]string{"attach", pid, "-o", "json", "--stuck-after", "1ns"}, tc.args...)...)
		if code != ExitDeadlock {
			t.Fatalf("attach %v: exit %d: %s", tc.args, code, stderr)
		}
		found := map[string]bool{}
		for _, s := range readReport(t, []byte(stdout)).Stacks {
			if s.Source == tc.source && len(s.Goroutines) == 1 {
				found[fmt.Sprintf("%s %d", s.Role, s.Goroutines[0])] = true
			}
		}
		if h, w := fmt.Sprintf("holder %d", ga), fmt.Sprintf("waiter %d", gb); !found[h] || !found[w] {
			t.Errorf("attach %v: %s stacks %v; want %q and %q", tc.args, tc.source, found, h, w)
		}
	}
}

// manyWaitersEnv, in manyRole's environment, is how many goroutines wait
// for held mutexes (one each), besides its 10,000.
const manyWaitersEnv = "LOCKWATCH_CLI_MANY_WAITERS"

// manyRole keeps 100,000 live drop-in mutexes, 1,000 of them held by
// parked goroutines, and 10,000 goroutines in all, plus $manyWaitersEnv
// goroutines that wait for held mutexes; it says "ready", then answers
// pauseCommands on stdin. Without a probe started from its environment,
// and with $manyWaitersEnv set, it starts its own (quietProbe).
func manyRole() int {
	a, err := started()
	if err != nil && os.Getenv(manyWaitersEnv) != "" {
		// BenchmarkAttachPauseDropIn: a probe without stuck hooks.
		a, err = probe.Start(quietProbe(os.Getenv(dirEnv), "many"))
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	type item struct {
		mu lwsync.Mutex
		n  int
	}
	items := make([]*item, 100000)
	keep = items // live until the process ends: a dropped mutex is collected
	for i := range items {
		items[i] = new(item)
		items[i].mu.Lock()
		items[i].n++
		items[i].mu.Unlock()
	}
	park := make(chan struct{})
	var held lwsync.WaitGroup
	for g := 0; g < 10000; g++ {
		held.Add(1)
		go func() {
			if g%10 == 0 {
				items[g*10].mu.Lock()
			}
			held.Done()
			<-park
		}()
	}
	held.Wait()
	waiters, _ := strconv.Atoi(os.Getenv(manyWaitersEnv))
	for k := range min(waiters, 1000) {
		go items[k*100].mu.Lock() // held by goroutine 10*k's
	}
	if err := waitMutexes(a, min(waiters, 1000)); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	pauseCommands(bufio.NewReader(os.Stdin))
	return 0
}

// keep holds manyRole's mutexes.
var keep any

// BenchmarkAttachDropIn100k: lockwatch attach on a process with 100,000
// live drop-in mutexes (1,000 held) and 10,000 goroutines (issue 9: under
// 1 s).
func BenchmarkAttachDropIn100k(b *testing.B) {
	dir := runDir(b)
	cmd, _, out := child(b, "many", dir, probe.EnvDir+"="+dir)
	expectLine(b, out, "ready")
	pid := strconv.Itoa(cmd.Process.Pid)
	for b.Loop() {
		code, stdout, stderr := lockwatch(b, "attach", pid, "-o", "json")
		if code != ExitOK && code != ExitDeadlock {
			b.Fatalf("exit %d: %s", code, stderr)
		}
		if r := readReport(b, []byte(stdout)); len(r.Locks) != 1000 {
			b.Fatalf("%d locks in the report; want the 1,000 held (notes %q)", len(r.Locks), r.Notes)
		}
	}
}
