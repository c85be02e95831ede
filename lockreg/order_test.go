package lockreg

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// script runs a lock script in r, one token at a time, from the calling
// goroutine unless told otherwise:
//
//	+X  Lock X          -X  Unlock X
//	?X  TryLock X, which must fail          !X  TryLock X, which must succeed
//	*X  Lock X from another goroutine, which keeps it
//	~X  Unlock X from another goroutine
func script(r *Registry, s string) error {
	ctx := context.Background()
	for _, tok := range strings.Fields(s) {
		op, name := tok[0], tok[1:]
		m, err := r.Mutex(name)
		if err != nil {
			return err
		}
		other := func(f func() error) error {
			done := make(chan error)
			go func() { done <- f() }()
			return <-done
		}
		switch op {
		case '+':
			err = m.Lock(ctx)
		case '-':
			err = m.Unlock()
		case '?', '!':
			var ok bool
			ok, err = m.TryLock()
			if err == nil && ok != (op == '!') {
				err = fmt.Errorf("TryLock %s: got %v", name, ok)
			}
		case '*':
			err = other(func() error { return m.Lock(ctx) })
		case '~':
			err = other(m.Unlock)
		default:
			err = fmt.Errorf("bad token %q", tok)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tok, err)
		}
	}
	return nil
}

// orderRole is a child process's body for the order tests: "order SCRIPT..."
// runs a script; "orderload N" takes N nested acquires of locks L0..L7 in
// increasing order from 4 goroutines.
func orderRole(r *Registry, role string, args []string) int {
	var err error
	switch role {
	case "order":
		err = script(r, strings.Join(args, " "))
	case "orderload":
		n, _ := strconv.Atoi(args[0])
		err = orderLoad(r, n)
	}
	if err == nil {
		err = r.Close()
	}
	if err != nil {
		say("error %v", err)
		return 1
	}
	say("done")
	return 0
}

// orderLoad takes n acquires in all, in nested runs of 2 to 4 of the
// locks L0..L7, always in increasing order, from 4 goroutines.
func orderLoad(r *Registry, n int) error {
	ms := make([]*Mutex, 8)
	for i := range ms {
		var err error
		if ms[i], err = r.Mutex("L" + strconv.Itoa(i)); err != nil {
			return err
		}
	}
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(os.Getpid())))
			ctx := context.Background()
			for done := 0; done < n/4; {
				var pick []int
				for i := range ms {
					if rng.IntN(3) == 0 {
						pick = append(pick, i)
					}
				}
				for _, i := range pick {
					if err := ms[i].Lock(ctx); err != nil {
						errs <- err
						return
					}
				}
				for k := len(pick) - 1; k >= 0; k-- {
					if err := ms[pick[k]].Unlock(); err != nil {
						errs <- err
						return
					}
				}
				done += len(pick)
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// edges lists a snapshot's edges as "A>B".
func edges(t *testing.T, r *Registry) (arena.Orders, []string) {
	t.Helper()
	s, err := r.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range s.Orders.Edges {
		out = append(out, e.From+">"+e.To)
	}
	return s.Orders, out
}

func TestOrderEdges(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{"nested", "+A +B -B -A", []string{"A>B"}},
		{"three deep", "+A +B +C -C -B -A", []string{"A>B", "A>C", "B>C"}},
		{"consistent order, many times", "+A +B -B -A +A +B -A -B +A +B -B -A", []string{"A>B"}},
		{"never nested", "+A -A +B -B +A -A", nil},
		{"re-taken after release", "+A -A +A -A +A -A", nil},
		{"released, then the other order", "+A -A +B +A -A -B", []string{"B>A"}},
		{"both orders", "+A +B -B -A +B +A -A -B", []string{"A>B", "B>A"}},
		{"failed try-lock", "*B +A ?B -A ~B", nil},
		{"successful try-lock", "+A !B -B -A", []string{"A>B"}},
		{"unlocked by another goroutine", "+A ~A +B -B", nil},
		// The holder's cell is cleared by the unlocking goroutine: 16
		// foreign unlocks leave the bucket's 15 cells free.
		{"unlocked by another goroutine, many times", strings.Repeat("+A ~A ", 16) + "+B +C -C -B", []string{"B>C"}},
		{"held by another goroutine", "*A +B -B ~A", nil},
		{"held by another goroutine, then by us", "*A +B ~A +A -A -B", []string{"B>A"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(runDir(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := script(r, tc.script); err != nil {
				t.Fatal(err)
			}
			o, got := edges(t, r)
			if !slices.Equal(got, tc.want) {
				t.Errorf("edges of %q: got %v; want %v", tc.script, got, tc.want)
			}
			if o.Dropped != 0 || o.Untracked != 0 || o.Pending != 0 {
				t.Errorf("got %+v; want nothing dropped, untracked or pending", o)
			}
			snap, err := r.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range o.Edges {
				if e.PID != os.Getpid() || e.Start != r.Self().Start || e.Goroutine == 0 || e.FromStack == 0 || e.ToStack == 0 || e.Time.IsZero() {
					t.Errorf("edge %+v: want this process, a goroutine, both stacks and a time", e)
				}
				if _, ok := snap.Stack(r.Self(), e.ToStack); !ok {
					t.Errorf("edge %s>%s: stack %x is not in the dictionary", e.From, e.To, e.ToStack)
				}
			}
		})
	}
}

func TestOrderNoRecordRecordsNoEdge(t *testing.T) {
	r, err := Open(runDir(t), Options{NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := script(r, "+A +B -B -A"); err != nil {
		t.Fatal(err)
	}
	if _, got := edges(t, r); got != nil {
		t.Errorf("got %v; want no edge under NoRecord", got)
	}
}

func TestOrderTableFull(t *testing.T) {
	r, err := Open(runDir(t), Options{MaxEdges: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Six distinct edges, each taken twice: three recorded, three
	// dropped, each counted once.
	for i := 0; i < 2; i++ {
		if err := script(r, "+A +B +C +D -D -C -B -A +E +F -F -E"); err != nil {
			t.Fatal(err)
		}
	}
	o, got := edges(t, r)
	if len(got) != 3 || o.Dropped != 4 || o.Capacity != 3 {
		t.Errorf("got edges %v, dropped %d, capacity %d; want 3 edges, 4 dropped (7 distinct), capacity 3", got, o.Dropped, o.Capacity)
	}
}

func TestOrderUntracked(t *testing.T) {
	r, err := Open(runDir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var take, release []string
	for i := 0; i < arena.HeldCells+2; i++ {
		take = append(take, fmt.Sprintf("+L%02d", i))
		release = append([]string{fmt.Sprintf("-L%02d", i)}, release...)
	}
	if err := script(r, strings.Join(append(take, release...), " ")); err != nil {
		t.Fatal(err)
	}
	o, got := edges(t, r)
	// The 16th and 17th locks are not tracked: edges into them are
	// recorded, edges from them are not.
	if o.Untracked != 2 {
		t.Errorf("untracked: got %d; want 2", o.Untracked)
	}
	n := arena.HeldCells + 2
	if want := n*(n-1)/2 - 1; len(got) != want {
		t.Errorf("got %d edges; want %d", len(got), want)
	}
	// Every cell is free again.
	if err := script(r, "+X +Y -Y -X"); err != nil {
		t.Fatal(err)
	}
	if o, _ := edges(t, r); o.Untracked != 2 {
		t.Errorf("untracked after: got %d; want 2", o.Untracked)
	}
}

// TestOrderAcrossProcesses: two processes that take A then B, and B then
// A, one after the other (never overlapping), both exited: both edges are
// read with their pids.
func TestOrderAcrossProcesses(t *testing.T) {
	dir := runDir(t)
	x := startRole(t, true, "order", dir, "+A", "+B", "-B", "-A")
	x.expect("done")
	_ = x.cmd.Wait()
	y := startRole(t, true, "order", dir, "+B", "+A", "-A", "-B")
	y.expect("done")
	_ = y.cmd.Wait()
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.Orders.Edges {
		got = append(got, fmt.Sprintf("%s>%s@%d", e.From, e.To, e.PID))
	}
	want := []string{fmt.Sprintf("A>B@%d", x.pid()), fmt.Sprintf("B>A@%d", y.pid())}
	if !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

// TestOrderLoad: 4 processes of 4 goroutines take a million acquires in
// all, nested, always in the same order: every edge goes up.
func TestOrderLoad(t *testing.T) {
	dir := runDir(t)
	var cs []*child
	for i := 0; i < 4; i++ {
		cs = append(cs, startRole(t, true, "orderload", dir, "250000"))
	}
	for _, c := range cs {
		c.expect("done")
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Orders.Edges) == 0 {
		t.Fatal("no edge recorded")
	}
	for _, e := range s.Orders.Edges {
		if e.From >= e.To {
			t.Errorf("edge %s>%s by pid %d g%d: against the order taken", e.From, e.To, e.PID, e.Goroutine)
		}
	}
	if o := s.Orders; o.Dropped != 0 || o.Untracked != 0 || o.Pending != 0 || len(o.Edges) > 28 {
		t.Errorf("got %d edges, %d dropped, %d untracked, %d pending; want at most 28 edges and nothing else", len(o.Edges), o.Dropped, o.Untracked, o.Pending)
	}
}

// TestOrderSharedBucket: a goroutine whose id falls in our bucket holds A
// while we take B: A is not ours, so no edge A -> B; then we take A after B
// (it released A): B -> A.
func TestOrderSharedBucket(t *testing.T) {
	r, err := Open(runDir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, _ := r.Mutex("A")
	b, _ := r.Mutex("B")
	ctx := context.Background()
	mine := r.order.held.Of(curGoid())
	// Start goroutines until one shares our bucket (1 in 1024); it takes
	// A, says so, and releases A when told.
	type peer struct{ locked, release, done chan error }
	var p *peer
	for tries := 0; p == nil; tries++ {
		if tries > 1<<20 {
			t.Fatal("no goroutine fell in our bucket")
		}
		q := &peer{locked: make(chan error), release: make(chan error), done: make(chan error)}
		match := make(chan bool)
		go func() {
			if r.order.held.Of(curGoid()) != mine {
				match <- false
				return
			}
			match <- true
			q.locked <- a.Lock(ctx)
			<-q.release
			q.done <- a.Unlock()
		}()
		if <-match {
			p = q
		}
	}
	if err := <-p.locked; err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	if err := <-p.done; err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a.Unlock()
	_ = b.Unlock()
	if _, got := edges(t, r); !slices.Equal(got, []string{"B>A"}) {
		t.Errorf("got edges %v; want [B>A] only", got)
	}
}

// TestOrderSharedBucketRace: 8 goroutines whose ids fall in one bucket,
// each taking its own two locks nested (g<i>.a, then g<i>.b) thousands of
// times at once. They race on the bucket's cells: a goroutine sees the
// others' cells, and reads their holder records while they are being
// written (a torn read, which must not retry with a Gosched while pinned:
// before the fix the runtime died with "schedule: holding locks"). Every
// edge recorded must be one a goroutine took: g<i>.a > g<i>.b, never a lock
// of one goroutine to a lock of another.
func TestOrderSharedBucketRace(t *testing.T) {
	const goroutines, rounds = 8, 5000
	r, err := Open(runDir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	bucket := r.order.held.Of(curGoid())
	start := make(chan struct{})
	errs := make(chan error, goroutines)
	for g, tries := 0, 0; g < goroutines; tries++ {
		if tries > 1<<22 {
			t.Fatalf("only %d goroutines fell in our bucket", g)
		}
		match := make(chan bool)
		a, _ := r.Mutex(fmt.Sprintf("g%d.a", g))
		b, _ := r.Mutex(fmt.Sprintf("g%d.b", g))
		go func() {
			if r.order.held.Of(curGoid()) != bucket {
				match <- false
				return
			}
			match <- true
			<-start
			errs <- func() error {
				for i := 0; i < rounds; i++ {
					if err := a.Lock(ctx); err != nil {
						return err
					}
					if err := b.Lock(ctx); err != nil {
						return err
					}
					if err := b.Unlock(); err != nil {
						return err
					}
					if err := a.Unlock(); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
		if <-match {
			g++
		}
	}
	close(start)
	for g := 0; g < goroutines; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	o, got := edges(t, r)
	var want []string
	for g := 0; g < goroutines; g++ {
		want = append(want, fmt.Sprintf("g%d.a>g%d.b", g, g))
	}
	for _, e := range got {
		if !slices.Contains(want, e) {
			t.Errorf("edge %s: no goroutine took it", e)
		}
	}
	// A lost cell misses an edge for one round; over thousands of rounds
	// each goroutine's edge is found.
	if len(got) != len(want) {
		t.Errorf("got edges %v; want %v", got, want)
	}
	if o.Dropped != 0 || o.Pending != 0 {
		t.Errorf("got %+v; want nothing dropped or pending", o)
	}
}

// TestNestedTornHolderRecord: a goroutine acquires B while its bucket names
// lock A, whose holder record is mid-write (odd sequence: another goroutine
// of the bucket taking A). The lock-order check runs pinned, so it must read
// A's record once and give no edge; a retry (runtime.Gosched while pinned)
// is a fatal error of the runtime, which killed this test binary on the old
// code every run.
func TestNestedTornHolderRecord(t *testing.T) {
	r, err := Open(runDir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := r.Mutex("torn.a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Mutex("torn.b")
	if err != nil {
		t.Fatal(err)
	}
	h := &r.a.Lock(a.idx).Holder
	seq := h.Seq.Load()
	h.Seq.BeginAt(seq | 1) // a writer in the middle of the record
	defer h.Seq.End((seq | 1) + 1)
	bk := r.order.held.Of(curGoid()) // this goroutine holds a, by its cell
	if !bk.HoldFirst(uint64(a.idx) + 1) {
		t.Fatal("this goroutine's bucket is not empty")
	}
	defer bk.UnholdOnly(uint64(a.idx) + 1)
	if err := b.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	s, err := r.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Orders.Edges) != 0 {
		t.Errorf("edges %+v from a lock whose holder record was mid-write; want none", s.Orders.Edges)
	}
}
