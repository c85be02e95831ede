//go:build !nolockwatch && (amd64 || arm64)

//lint:file-ignore SA2001 the order of acquires is what is tested: the critical sections are empty on purpose

package sync_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// The lock-order edges of the drop-in mutexes, read in this process
// (internal/rt/inproc.TakeOrders): what makes an edge and what does not. The
// table is the process's, so each test looks only at the edges between its
// own mutexes. The tests through lockwatch attach and run, in real
// processes, are in internal/app/cli (droporder_test.go).

// edgesAmong returns the recorded edges between the locks of ids, as
// "a>b" with the names given, in the order recorded.
func edgesAmong(names map[uint64]string) []string {
	var out []string
	for _, e := range inproc.TakeOrders().Edges {
		f, ok1 := names[e.From.ID]
		t, ok2 := names[e.To.ID]
		if ok1 && ok2 {
			out = append(out, f+">"+t)
		}
	}
	return out
}

func edgeAmong(names map[uint64]string, from, to string) (inproc.Edge, bool) {
	for _, e := range inproc.TakeOrders().Edges {
		if names[e.From.ID] == from && names[e.To.ID] == to {
			return e, true
		}
	}
	return inproc.Edge{}, false
}

// inGoroutine runs f in a goroutine of its own and waits for it.
func inGoroutine(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func mutexNames(ms map[string]*lwsync.Mutex) map[uint64]string {
	out := map[uint64]string{}
	for n, m := range ms {
		out[lwsync.IDOf(m)] = n
	}
	return out
}

// TestOrderEdge: A then B records A -> B once, with the goroutine, the
// sites of both acquires and the stack of the second; B alone, and B after
// A's release, record nothing more.
func TestOrderEdge(t *testing.T) {
	a, b := new(lwsync.Mutex), new(lwsync.Mutex)
	var lineA, lineB int
	for i := 0; i < 3; i++ {
		inGoroutine(func() {
			a.Lock()
			lineA = line() - 1
			b.Lock()
			lineB = line() - 1
			b.Unlock()
			a.Unlock()
			b.Lock() // holding nothing
			b.Unlock()
			a.Lock()
			a.Unlock()
			b.Lock() // A released: no edge
			b.Unlock()
		})
	}
	names := mutexNames(map[string]*lwsync.Mutex{"A": a, "B": b})
	if got := edgesAmong(names); !slices.Equal(got, []string{"A>B"}) {
		t.Fatalf("got edges %v; want [A>B] once", got)
	}
	e, _ := edgeAmong(names, "A", "B")
	if e.Goroutine == 0 || e.FromRead || e.ToRead {
		t.Errorf("edge: goroutine %d, read %v %v; want a goroutine, no read", e.Goroutine, e.FromRead, e.ToRead)
	}
	if len(e.FromStack) == 0 || len(e.ToStack) == 0 {
		t.Fatalf("edge stacks: %d and %d frames; want both", len(e.FromStack), len(e.ToStack))
	}
	from, to := frameOf(e.FromStack[0]), frameOf(e.ToStack[0])
	if from.Line != lineA || to.Line != lineB || !strings.Contains(to.Function, "TestOrderEdge") {
		t.Errorf("edge sites: %s:%d and %s:%d; want lines %d and %d of TestOrderEdge", from.Function, from.Line, to.Function, to.Line, lineA, lineB)
	}
	// The first stack goes on from the function that took A, as the second.
	if len(e.FromStack) < 2 || len(e.FromStack) != len(e.ToStack) || !slices.Equal(e.FromStack[1:], e.ToStack[1:]) {
		t.Errorf("from stack %v; want A's site then the callers of the second stack %v", e.FromStack, e.ToStack)
	}
}

// TestOrderNoEdge: the cases that are not an order. A lock re-taken after
// its release; a goroutine that holds A, releases it, then takes B then A
// (only B -> A); a failed TryLock (a successful one is an acquire); a
// lock held by another goroutine.
func TestOrderNoEdge(t *testing.T) {
	ms := map[string]*lwsync.Mutex{}
	for _, n := range []string{"A", "B", "C", "D", "E", "F"} {
		ms[n] = new(lwsync.Mutex)
	}
	inGoroutine(func() {
		ms["A"].Lock()
		ms["A"].Unlock()
		ms["A"].Lock() // re-taken
		ms["A"].Unlock()

		ms["A"].Lock()
		ms["A"].Unlock()
		ms["B"].Lock()
		ms["A"].Lock()
		ms["A"].Unlock()
		ms["B"].Unlock()
	})
	// A failed TryLock of D while C is held: D is another goroutine's.
	held, release := make(chan struct{}), make(chan struct{})
	go func() {
		ms["D"].Lock()
		close(held)
		<-release
		ms["D"].Unlock()
	}()
	<-held
	inGoroutine(func() {
		ms["C"].Lock()
		if ms["D"].TryLock() {
			t.Error("TryLock of a held mutex succeeded")
		}
		ms["C"].Unlock()
	})
	// The holder of D holds nothing else; a goroutine that holds E takes F
	// while D is held by another: E -> F only.
	inGoroutine(func() {
		ms["E"].Lock()
		ms["F"].Lock()
		ms["F"].Unlock()
		ms["E"].Unlock()
	})
	close(release)
	// A successful TryLock is an acquire: E -> D.
	inGoroutine(func() {
		ms["E"].Lock()
		for !ms["D"].TryLock() {
			runtime.Gosched() // until the other goroutine has released it
		}
		ms["D"].Unlock()
		ms["E"].Unlock()
	})
	got := edgesAmong(mutexNames(ms))
	slices.Sort(got)
	if want := []string{"B>A", "E>D", "E>F"}; !slices.Equal(got, want) {
		t.Errorf("got edges %v; want %v", got, want)
	}
}

// TestOrderReadLocks: a read lock held is a lock held (RLock of A, then
// Lock of B, is A -> B), and RLock after a held lock is an acquire.
func TestOrderReadLocks(t *testing.T) {
	a, c := new(lwsync.RWMutex), new(lwsync.RWMutex)
	b := new(lwsync.Mutex)
	inGoroutine(func() {
		a.RLock()
		b.Lock()
		b.Unlock()
		a.RUnlock()
		b.Lock()
		c.RLock()
		c.RUnlock()
		b.Unlock()
		rl := a.RLocker()
		rl.Lock()
		c.Lock()
		c.Unlock()
		rl.Unlock()
	})
	names := map[uint64]string{lwsync.IDOf(a): "a", lwsync.IDOf(b): "B", lwsync.IDOf(c): "c"}
	got := edgesAmong(names)
	if want := []string{"a>B", "B>c", "a>c"}; !slices.Equal(got, want) {
		t.Fatalf("got edges %v; want %v", got, want)
	}
	if e, _ := edgeAmong(names, "a", "B"); !e.FromRead || e.ToRead {
		t.Errorf("a>B read flags %v %v; want from read", e.FromRead, e.ToRead)
	}
	if e, _ := edgeAmong(names, "B", "c"); e.FromRead || !e.ToRead {
		t.Errorf("B>c read flags %v %v; want to read", e.FromRead, e.ToRead)
	}
}

// TestOrderForeignUnlock: a mutex locked by one goroutine and unlocked by
// another (legal in Go) is held by nobody from then on: its locker's next
// acquire makes no edge from it. The same for a read lock released by
// another goroutine.
func TestOrderForeignUnlock(t *testing.T) {
	a, b := new(lwsync.Mutex), new(lwsync.Mutex)
	rw, c := new(lwsync.RWMutex), new(lwsync.Mutex)
	locked, unlocked := make(chan struct{}), make(chan struct{})
	var wg gosync.WaitGroup
	wg.Go(func() {
		a.Lock()
		rw.RLock()
		close(locked)
		<-unlocked // released by the test's goroutine
		b.Lock()
		c.Lock()
		c.Unlock()
		b.Unlock()
	})
	<-locked
	a.Unlock()
	rw.RUnlock()
	close(unlocked)
	wg.Wait()
	names := map[uint64]string{lwsync.IDOf(a): "A", lwsync.IDOf(b): "B",
		lwsync.IDOf(rw): "rw", lwsync.IDOf(c): "C"}
	if got := edgesAmong(names); !slices.Equal(got, []string{"A>rw", "B>C"}) {
		t.Errorf("got edges %v; want A>rw (taken while A was held) and B>C", got)
	}
}

// TestOrderSharedBucket: goroutines whose cells share a bucket never see
// each other's locks as their own. More goroutines than buckets (1,024)
// each hold a lock of their own while others take one: every bucket has a
// cell of another goroutine, and no edge joins two goroutines' locks.
func TestOrderSharedBucket(t *testing.T) {
	const n = 1100
	own := make([]lwsync.Mutex, n)
	other := new(lwsync.Mutex)
	names := map[uint64]string{}
	var wg gosync.WaitGroup
	holding := make(chan struct{}, n)
	release := make(chan struct{})
	for i := range own {
		wg.Go(func() {
			own[i].Lock()
			holding <- struct{}{}
			<-release
			own[i].Unlock()
		})
	}
	for range n {
		<-holding
	}
	for i := 0; i < 200; i++ {
		inGoroutine(func() {
			other.Lock()
			other.Unlock()
		})
	}
	close(release)
	wg.Wait()
	for i := range own {
		names[lwsync.IDOf(&own[i])] = fmt.Sprint("own", i)
	}
	names[lwsync.IDOf(other)] = "other"
	if got := edgesAmong(names); len(got) != 0 {
		t.Errorf("got edges %v; want none", got)
	}
}
