//go:build stress

package stress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/report"
)

// The kill storm's size: 64 worker processes (LOCKWATCH_STRESS_STORM_PROCS
// to change it), 16 locks, 500 kills, with LOCKWATCH_STRESS_STORM_ATTACHERS
// (default 4) lockwatch attach loops and one lockwatch watch reading the
// run throughout.
const stormLocks = 16

var (
	stormKills     = envInt("LOCKWATCH_STRESS_STORM_KILLS", 500)
	stormProcs     = envInt("LOCKWATCH_STRESS_STORM_PROCS", 64)
	stormAttachers = envInt("LOCKWATCH_STRESS_STORM_ATTACHERS", 4)
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// stormRole takes random locks of the run in dir under the Recover policy
// until its stdin closes. cells names a shared file of one 8-byte cell per
// lock: inside the critical section a worker stores its pid there and
// checks, while it works, that nobody else did; on a normal acquire the
// cell must be 0 (a dead holder may leave its pid only in the cell of a
// lock it died holding, and that acquire returns ErrOwnerDead). It prints
// "ready", then "recovered LOCK MONO" for each ErrOwnerDead, "violation
// ..." for each broken exclusion.
func stormRole(dir, cells string) int {
	r, err := lockreg.Open(dir, lockreg.Options{Role: "storm", Policy: lockreg.Recover})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	f, err := os.OpenFile(cells, os.O_RDWR, 0)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 8*stormLocks, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	cell := func(i int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[8*i])) }
	var ms []*lockreg.Mutex
	for i := range stormLocks {
		m, err := r.Mutex(fmt.Sprintf("storm.%02d", i))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		ms = append(ms, m)
	}
	var stop atomic.Bool
	go func() {
		io_ := make([]byte, 1)
		for {
			if _, err := os.Stdin.Read(io_); err != nil {
				stop.Store(true)
				return
			}
		}
	}()
	fmt.Println("ready")
	pid := uint32(os.Getpid())
	ctx := context.Background()
	for !stop.Load() {
		i := rand.IntN(stormLocks)
		err := ms[i].Lock(ctx)
		switch {
		case errors.Is(err, lockreg.ErrOwnerDead):
			fmt.Printf("recovered %d %d\n", i, monotonic())
		case err != nil:
			fmt.Println("error", err)
			return 1
		default:
			if prev := cell(i).Load(); prev != 0 {
				fmt.Printf("violation %d: acquired while the cell says pid %d\n", i, prev)
			}
		}
		cell(i).Store(pid)
		// Hold it a while (up to 1 ms), so that most kills find locks
		// held, checking the cell on both sides.
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		if c := cell(i).Load(); c != pid {
			fmt.Printf("violation %d: pid %d in the cell while held\n", i, c)
		}
		cell(i).Store(0)
		if err := ms[i].Unlock(); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	if err := r.Close(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// stormLine is one line of a storm worker's output, as the parent got it.
type stormLine struct {
	pid  int
	text string
}

// TestKillStorm: 500 SIGKILLs over 64 processes x 16 locks (Recover policy).
// Each victim is stopped (SIGSTOP) before it is killed, so that the locks
// it holds at the kill are read exactly from the arena; each must then be
// recovered by another worker (its recovery latency measured from the kill,
// on CLOCK_MONOTONIC, which every process shares), or flagged dead-holder by
// lockwatch at the end. Meanwhile lockwatch attach -o json runs in
// stormAttachers loops, and lockwatch watch -o json reads the run
// throughout: every finding must name a holder (or waiter) that was
// killed.
func TestKillStorm(t *testing.T) {
	began := time.Now()
	lw := lockwatchBin(t)
	base := t.TempDir()
	dir := filepath.Join(base, "run")
	cells := filepath.Join(base, "cells")
	if err := os.WriteFile(cells, make([]byte, 8*stormLocks), 0o600); err != nil {
		t.Fatal(err)
	}
	// The parent creates the run with room for every restart (slots of
	// dead processes are not reclaimed before issue 8 item 3).
	reg, err := lockreg.Open(dir, lockreg.Options{MaxProcs: stormKills + 4*stormProcs})
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()

	lines := make(chan stormLine, 1024)
	var readers sync.WaitGroup
	// alive holds the workers that are ready and not yet chosen to die; a
	// killed worker is replaced at once, while the storm goes on.
	var (
		poolMu   sync.Mutex
		poolCond = sync.NewCond(&poolMu)
		alive    []*worker
		all      []*worker
		spawnErr error
		spawning sync.WaitGroup
	)
	spawn := func() {
		defer spawning.Done()
		w, err := start("storm", dir, cells)
		poolMu.Lock()
		defer poolMu.Unlock()
		defer poolCond.Broadcast()
		if err != nil {
			spawnErr = err
			return
		}
		alive = append(alive, w)
		all = append(all, w)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				l, err := w.out.ReadString('\n')
				if err != nil {
					return
				}
				lines <- stormLine{w.cmd.Process.Pid, strings.TrimSpace(l)}
			}
		}()
	}
	t.Cleanup(func() { // after a failure: no worker left behind
		spawning.Wait()
		for _, w := range all {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	for range stormProcs {
		spawning.Add(1)
		go spawn()
	}

	var mu sync.Mutex
	killed := make(map[int]bool)   // pids killed so far
	pending := make(map[int]int64) // lock -> monotonic time of the kill that left it dead-held
	var latencies []time.Duration
	var violations, unexpected []string
	heldAtKill := 0
	collect := func(l stormLine) {
		mu.Lock()
		defer mu.Unlock()
		f := strings.Fields(l.text)
		switch {
		case len(f) == 3 && f[0] == "recovered":
			i, _ := strconv.Atoi(f[1])
			at, _ := strconv.ParseInt(f[2], 10, 64)
			killedAt, ok := pending[i]
			if !ok {
				unexpected = append(unexpected, fmt.Sprintf("pid %d: %s", l.pid, l.text))
				return
			}
			delete(pending, i)
			latencies = append(latencies, time.Duration(at-killedAt))
		case len(f) > 0 && f[0] == "violation":
			violations = append(violations, fmt.Sprintf("pid %d: %s", l.pid, l.text))
		default:
			unexpected = append(unexpected, fmt.Sprintf("pid %d: %s", l.pid, l.text))
		}
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for l := range lines {
			collect(l)
		}
	}()

	// Concurrent attaches, each checked against the kills made before it
	// returned; and a watch, each report checked when it is read.
	var attaches, watched, falseFindings int
	var falseText []string
	judgeReport := func(what string, r *report.Report) {
		for _, f := range r.Findings {
			if !trueFinding(f, killed) {
				falseFindings++
				falseText = append(falseText, fmt.Sprintf("%s: %s %s: %s", what, f.Kind, f.Lock, f.Summary))
			}
		}
	}
	stopAttach := make(chan struct{})
	var attachers sync.WaitGroup
	for range stormAttachers {
		attachers.Add(1)
		go func() {
			defer attachers.Done()
			for {
				select {
				case <-stopAttach:
					return
				default:
				}
				out, err := exec.Command(lw, "attach", "-o", "json", dir).Output()
				code := 0
				var xe *exec.ExitError
				if errors.As(err, &xe) {
					code = xe.ExitCode()
				} else if err != nil {
					t.Errorf("attach: %v", err)
					return
				}
				var r report.Report
				if code != 0 && code != 3 || json.Unmarshal(out, &r) != nil {
					t.Errorf("attach: exit %d, output %q", code, out)
					return
				}
				mu.Lock()
				attaches++
				judgeReport("attach", &r)
				mu.Unlock()
			}
		}()
	}
	watch := exec.Command(lw, "watch", "-o", "json", "--interval", "100ms", dir)
	watchOut, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	watch.Stderr = os.Stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		dec := json.NewDecoder(watchOut)
		for {
			var r report.Report
			if err := dec.Decode(&r); err != nil {
				return
			}
			mu.Lock()
			watched++
			judgeReport("watch", &r)
			mu.Unlock()
		}
	}()

	for k := range stormKills {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // pacing, not a wait for a condition
		// Kill when at least stormProcs-2 workers run (the rest are
		// starting).
		poolMu.Lock()
		for len(alive) < stormProcs-2 && spawnErr == nil {
			poolCond.Wait()
		}
		if spawnErr != nil {
			poolMu.Unlock()
			t.Fatal(spawnErr)
		}
		n := rand.IntN(len(alive))
		w := alive[n]
		alive = slices.Delete(alive, n, n+1)
		poolMu.Unlock()
		pid := w.cmd.Process.Pid
		if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("kill %d: SIGSTOP %d: %v", k, pid, err)
		}
		waitStopped(t, pid)
		s, err := arena.ReadSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		killed[pid] = true
		at := monotonic()
		for _, l := range s.Locks {
			if l.HolderPID == pid {
				i, _ := strconv.Atoi(strings.TrimPrefix(l.Name, "storm."))
				pending[i] = at
				heldAtKill++
			}
		}
		if err := w.cmd.Process.Kill(); err != nil {
			mu.Unlock()
			t.Fatal(err)
		}
		mu.Unlock()
		w.cmd.Wait()
		spawning.Add(1)
		go spawn()
	}
	spawning.Wait()
	close(stopAttach)
	attachers.Wait()
	watch.Process.Signal(os.Interrupt)
	<-watchDone
	if err := watch.Wait(); err != nil {
		if xe, ok := err.(*exec.ExitError); !ok || xe.ExitCode() != 3 {
			t.Errorf("watch: %v", err)
		}
	}
	if spawnErr != nil {
		t.Fatal(spawnErr)
	}
	for _, w := range alive {
		w.in.Close()
	}
	for _, w := range alive {
		if err := w.cmd.Wait(); err != nil {
			t.Errorf("worker %d: %v", w.cmd.Process.Pid, err)
		}
	}
	readers.Wait()
	close(lines)
	<-collected

	// What no worker recovered must be flagged.
	out, _ := exec.Command(lw, "attach", "-o", "json", dir).Output()
	var final report.Report
	if err := json.Unmarshal(out, &final); err != nil {
		t.Fatalf("final attach: %v\n%s", err, out)
	}
	flagged := 0
	for i := range pending {
		name := fmt.Sprintf("storm.%02d", i)
		if slices.ContainsFunc(final.Findings, func(f report.Finding) bool { return f.Kind == report.DeadHolder && f.Lock == name }) {
			flagged++
		} else {
			t.Errorf("%s was held at a kill, never recovered, and lockwatch does not flag it", name)
		}
	}
	judgeReport("final", &final)

	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	t.Logf("kill storm: %d kills over %d processes x %d locks (Recover); %d locks held at a kill: %d recovered, %d flagged; recovery p50 %v, p99 %v, max %v; %d mutual-exclusion violations; %d attaches (%d loops), %d watch reports, %d false findings; %v",
		stormKills, stormProcs, stormLocks, heldAtKill, len(latencies), flagged, pct(0.50), pct(0.99), pct(1), len(violations), attaches, stormAttachers, watched, falseFindings, time.Since(began).Round(time.Second))
	if len(violations) > 0 {
		t.Errorf("mutual exclusion broken:\n%s", strings.Join(violations, "\n"))
	}
	if len(unexpected) > 0 {
		t.Errorf("unexpected worker output:\n%s", strings.Join(unexpected, "\n"))
	}
	if falseFindings > 0 {
		t.Errorf("false findings:\n%s", strings.Join(falseText, "\n"))
	}
	if attaches == 0 || watched == 0 {
		t.Errorf("%d attaches and %d watch reports during the storm; want some of each", attaches, watched)
	}
}

// trueFinding reports whether a finding names only processes that were
// killed: a dead holder, a stale waiter. Workers hold one lock at a time
// and briefly, so no cycle and no stuck holder is ever true here.
func trueFinding(f report.Finding, killed map[int]bool) bool {
	switch f.Kind {
	case report.DeadHolder:
		return f.Holder != nil && killed[f.Holder.PID]
	case report.StaleWaiter:
		for _, w := range f.Waiters {
			if !killed[w.PID] {
				return false
			}
		}
		return true
	}
	return false
}

// waitStopped waits until pid is in the stopped state.
func waitStopped(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not stopped after %v", pid, probablyStillBlocked)
		}
		pollPause()
	}
}
