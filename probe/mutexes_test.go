package probe

import (
	"bytes"
	"context"
	"fmt"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/lockreg"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// TestMutexesServed: the probe serves the drop-in mutexes' holders,
// readers and waiters, and its stuck hook reports a long wait once, with a
// dump pair, without ending anything.
func TestMutexesServed(t *testing.T) {
	stderr := &syncBuffer{}
	a := startAgent(t, Options{Stderr: stderr,
		Registry: lockreg.Options{StuckAfter: 100 * time.Millisecond}})
	c := &probeclient.Client{Path: a.SocketPath(), Timeout: probablyStillBlocked}
	ctx := context.Background()

	var mu lwsync.Mutex
	lwsync.SetName(&mu, "queue.buf")
	var rw lwsync.RWMutex
	ids := make(chan int64, 4)
	release := make(chan struct{})
	done := make(chan struct{}, 4)
	go func() { mu.Lock(); ids <- record.ParseGoid(); <-release; mu.Unlock(); done <- struct{}{} }()
	holder := <-ids
	//lint:ignore SA2001 the lock itself is what is tested
	go func() { ids <- record.ParseGoid(); mu.Lock(); mu.Unlock(); done <- struct{}{} }()
	waiter := <-ids
	rw.RLock()
	go func() { rw.RLock(); ids <- record.ParseGoid(); <-release; rw.RUnlock(); done <- struct{}{} }()
	reader := <-ids
	self := record.ParseGoid()

	var v *probeclient.MutexView
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		var err error
		if v, err = c.Mutexes(ctx); err != nil {
			t.Fatal(err)
		}
		// Listed by address: the mutex first, whatever the order.
		if len(v.Mutexes) == 2 && v.Mutexes[0].Kind == "rwmutex" {
			v.Mutexes[0], v.Mutexes[1] = v.Mutexes[1], v.Mutexes[0]
		}
		if len(v.Mutexes) == 2 && len(v.Mutexes[0].Waiters) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no waiter recorded after %v: %+v", probablyStillBlocked, v)
		}
		time.Sleep(time.Millisecond)
	}
	if v.PID != os.Getpid() || v.Live < 2 {
		t.Errorf("view pid %d live %d; want %d, at least 2", v.PID, v.Live, os.Getpid())
	}
	m := v.Mutexes[0]
	if m.Name != "queue.buf" || !m.Named || m.Kind != "mutex" || m.Holder == nil || m.Holder.Goroutine != holder {
		t.Errorf("mutex %+v; want queue.buf held by goroutine %d", m, holder)
	}
	if w := m.Waiters[0]; w.Goroutine != waiter || !w.Write || len(w.Stack) == 0 ||
		!strings.Contains(w.Stack[0].Func, "TestMutexesServed") {
		t.Errorf("waiter %+v; want goroutine %d writing, from the test", w, waiter)
	}
	r := v.Mutexes[1]
	if r.Kind != "rwmutex" || r.Named || !strings.Contains(r.Name, "TestMutexesServed") ||
		len(r.Readers) != 2 || r.Holder != nil {
		t.Errorf("rwmutex %+v; want two readers, named after a reader's RLock", r)
	}
	got := map[int64]bool{}
	for _, h := range r.Readers {
		got[h.Goroutine] = true
	}
	if !got[reader] || !got[self] {
		t.Errorf("readers %v; want %d and %d", got, reader, self)
	}

	// The lock-holders profile: a holder, a waiter, two readers, valid
	// pprof that reads back with its labels.
	var buf bytes.Buffer
	if err := probeclient.HoldersProfile(v).Write(&buf); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, s := range p.Sample {
		roles[s.Label["role"][0]]++
		if s.Label["role"][0] == "waiter" && (s.Label["name"][0] != "queue.buf" || s.NumLabel["goroutine"][0] != waiter ||
			len(s.Location) == 0 || !strings.Contains(s.Location[0].Line[0].Function.Name, "TestMutexesServed")) {
			t.Errorf("waiter sample %v", s)
		}
	}
	if roles["holder"] != 1 || roles["waiter"] != 1 || roles["reader"] != 2 || len(p.Sample) != 4 {
		t.Errorf("profile roles %v in %d samples; want 1 holder, 1 waiter, 2 readers", roles, len(p.Sample))
	}

	// The hook: one line for the waiter, naming the holder, and a dump.
	line := "goroutine " + strconv.FormatInt(waiter, 10) + " has waited"
	for !strings.Contains(stderr.String(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("no stuck line for goroutine %d; stderr:\n%s", waiter, stderr)
		}
		time.Sleep(time.Millisecond)
	}
	looks := a.mutexLooks.Load()
	for a.mutexLooks.Load() < looks+3 {
		if time.Now().After(deadline) {
			t.Fatal("the hook stopped looking")
		}
		time.Sleep(time.Millisecond)
	}
	out := stderr.String()
	if n := strings.Count(out, line); n != 1 {
		t.Errorf("%d stuck lines for one wait; want 1:\n%s", n, out)
	}
	want := `to lock drop-in mutex "queue.buf", held by goroutine ` + strconv.FormatInt(holder, 10)
	if !strings.Contains(out, want) || !strings.Contains(out, "dump: ") {
		t.Errorf("stuck line lacks %q or a dump:\n%s", want, out)
	}
	dumps, _ := filepath.Glob(filepath.Join(a.Dir(), "*.stuck-*"))
	if len(dumps) != 2 {
		t.Errorf("dump files %v; want a pair", dumps)
	}

	close(release)
	rw.RUnlock()
	for i := 0; i < 3; i++ {
		<-done
	}
	if v, err := c.Mutexes(ctx); err != nil || len(v.Mutexes) != 0 {
		t.Errorf("after release: %+v, %v; want no mutexes", v, err)
	}
}

// TestSiteThroughCond: a Mutex locked again by a Cond's Wait is recorded
// at the function that called Wait, not in sync.(*Cond).Wait.
func TestSiteThroughCond(t *testing.T) {
	var mu lwsync.Mutex
	c := lwsync.NewCond(&mu)
	ready := false
	held := make(chan int, 1)
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		mu.Lock()
		close(started)
		for !ready {
			c.Wait()
		}
		held <- callerLine() - 2 // the line of c.Wait()
		<-release
		mu.Unlock()
	}()
	deadline := time.Now().Add(probablyStillBlocked)
	<-started
	mu.Lock() // once the goroutine waits in Wait, which unlocked mu
	ready = true
	c.Broadcast()
	mu.Unlock()
	line := <-held
	for {
		v := mutexes()
		if len(v.Mutexes) == 1 && v.Mutexes[0].Holder != nil {
			site := v.Mutexes[0].Holder.Site
			if !strings.Contains(site.Func, "TestSiteThroughCond.func1") || site.Line != line {
				t.Errorf("site %v; want TestSiteThroughCond.func1 line %d", site, line)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mutex is not listed as held")
		}
	}
	close(release)
}

func callerLine() int {
	_, _, l, _ := runtime.Caller(1)
	return l
}

// mutexes is the view an agent would serve.
func mutexes() *mutexView { return (&Agent{}).mutexes() }

// rwtrapRole falls into the RWMutex trap: a goroutine read-locks an RWMutex
// it read-holds while a writer waits. It reports "trapped" once both wait.
func rwtrapRole(dir string) int {
	a, err := Start(Options{Dir: dir, Registry: lockreg.Options{StuckAfter: 50 * time.Millisecond}})
	if err != nil {
		report("error %v", err)
		return 1
	}
	defer a.Close()
	var rw lwsync.RWMutex
	lwsync.SetName(&rw, "config")
	held, again := make(chan int64), make(chan bool)
	go func() {
		rw.RLock()
		held <- record.ParseGoid()
		<-again
		rw.RLock() // deadlocks: a writer waits
	}()
	reader := <-held
	go rw.Lock()
	waiters := func(n int) {
		for {
			if v := a.mutexes(); len(v.Mutexes) == 1 && len(v.Mutexes[0].Waiters) == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waiters(1)
	again <- true
	waiters(2)
	report("trapped %d", reader)
	select {}
}

// TestStuckRWTrap: the stuck hook says a goroutine that read-locks an
// RWMutex it read-holds while a writer waits is a self-deadlock.
func TestStuckRWTrap(t *testing.T) {
	c := startChild(t, "rwtrap", testDirEnv+"="+runDir(t))
	var reader int64
	fmt.Sscanf(c.expect(c.stdout, "trapped"), "trapped %d", &reader)
	g := strconv.FormatInt(reader, 10)
	want := [][]string{
		{"goroutine " + g + " has waited", `to read-lock drop-in mutex "config", read-locked by goroutine ` + g,
			"read-holds it itself, and a writer waits: a self-deadlock"},
		{`to lock drop-in mutex "config", read-locked by goroutine ` + g},
	}
	seen := make([]bool, len(want))
	deadline := time.After(probablyStillBlocked)
	for !seen[0] || !seen[1] {
		select {
		case l := <-c.stderr:
			for i, w := range want {
				seen[i] = seen[i] || containsAll(l, w)
			}
		case <-deadline:
			t.Fatalf("stuck lines seen %v of %q", seen, want)
		}
	}
}
