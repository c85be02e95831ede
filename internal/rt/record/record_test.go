package record

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/lockwatch/lockwatch/internal/rt/record.tickCoarse"))
}

// TestGoidMatchesParsed checks the fast goroutine id against the parsed one
// in many goroutines, and that amd64 found the offset in g.
func TestGoidMatchesParsed(t *testing.T) {
	if _, ok := GoidOffset(); !ok && runtime.GOARCH == "amd64" {
		t.Errorf("no goid offset found in g on amd64 (method %q)", GoidMethod())
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := 0; i < 64; i++ {
		wg.Go(func() {
			if got, want := Goid(), ParseGoid(); got != want || want == 0 {
				errs <- fmt.Sprintf("got goroutine %d; want %d", got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestFramePointerWalkMatchesCallers checks the fast unwinder against the
// runtime's, frame for frame.
func TestFramePointerWalkMatchesCallers(t *testing.T) {
	old := SetFramePointers(true)
	defer SetFramePointers(old)
	if !FramePointers() {
		t.Skip("no frame-pointer unwinder on " + runtime.GOARCH)
	}
	var fp, rc Stack
	deep(12, func() {
		SetFramePointers(true)
		fp.Capture(0)
		SetFramePointers(false)
		rc.Capture(0)
	})
	// The walk also sees the compiler's go-statement wrappers, which
	// runtime.Callers elides.
	clean := func(fs []Frame) []Frame {
		var out []Frame
		for _, f := range fs {
			if !strings.Contains(f.Func, ".gowrap") && f.Func != "runtime.goexit" {
				out = append(out, f)
			}
		}
		return out
	}
	a := clean(FramesOf(fp.Frames()))
	b := clean(FramesOf(rc.Frames()))
	if len(a) != len(b) || len(a) < 12 {
		t.Fatalf("frame-pointer walk found %d frames, runtime.Callers %d; want equal, at least 12", len(a), len(b))
	}
	if !strings.HasSuffix(a[0].Func, "record.deep") {
		t.Errorf("first frame %v; want the caller of the function that called Capture", a[0])
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("frame %d: fp %v, runtime.Callers %v", i, a[i], b[i])
		}
	}
}

// TestFramePointerWalkSkips checks the walk's skip: frames skipped are
// not stored, and the walk still ends MaxFrames frames above Capture's
// caller (a stack deeper than that keeps MaxFrames-1-skip frames).
func TestFramePointerWalkSkips(t *testing.T) {
	old := SetFramePointers(true)
	defer SetFramePointers(old)
	if !FramePointers() {
		t.Skip("no frame-pointer unwinder on " + runtime.GOARCH)
	}
	var direct, via, deepest Stack
	deep(12, func() {
		direct.Capture(0)
		captureVia(&via)
	})
	if direct.N != via.N || direct.N < 12 {
		t.Fatalf("Capture(0) found %d frames, Capture(1) one call deeper %d; want equal, at least 12", direct.N, via.N)
	}
	for i := range direct.Frames() {
		if direct.PCs[i] != via.PCs[i] {
			t.Errorf("frame %d: Capture(0) %#x, Capture(1) one call deeper %#x", i, direct.PCs[i], via.PCs[i])
		}
	}
	deep(2*MaxFrames, func() { deepest.Capture(2) })
	if deepest.N != MaxFrames-3 {
		t.Errorf("Capture(2) on a stack of %d frames kept %d; want %d", 2*MaxFrames, deepest.N, MaxFrames-3)
	}
}

// TestStackIDMatchesHash checks that StackID, which hashes the walk
// without storing it, gives the id Hash gives to what Capture stores from
// the same place, with either unwinder, at every depth (past MaxFrames
// too) and skip; and that different stacks get different ids.
func TestStackIDMatchesHash(t *testing.T) {
	old := FramePointers()
	defer SetFramePointers(old)
	for _, fp := range []bool{true, false} {
		if SetFramePointers(fp); FramePointers() != fp {
			continue // no frame-pointer unwinder here
		}
		seen := map[uint64]int{}
		for depth := 0; depth <= 2*MaxFrames; depth++ {
			for skip := 0; skip < 3; skip++ {
				var s Stack
				var id uint64
				deep(depth, func() {
					id = StackID(skip)
					s.Capture(skip)
				})
				if want := s.Hash(); id != want || id == 0 {
					t.Errorf("frame pointers %v, depth %d, skip %d: StackID %#x, Hash of Capture %#x (%d frames)", fp, depth, skip, id, want, s.N)
				}
				if skip == 0 && depth < MaxFrames-4 {
					// Below MaxFrames each depth is a different stack.
					if d, ok := seen[id]; ok {
						t.Errorf("frame pointers %v: depths %d and %d have the same id %#x", fp, d, depth, id)
					}
					seen[id] = depth
				}
			}
		}
	}
}

// TestCallerIDMatchesCapture checks CallerID against what a lock does on
// a miss: Capture(1) from a helper the same function calls, at every depth
// (past MaxFrames too).
func TestCallerIDMatchesCapture(t *testing.T) {
	old := SetFramePointers(true)
	defer SetFramePointers(old)
	if !FramePointers() {
		t.Skip("no frame-pointer unwinder on " + runtime.GOARCH)
	}
	for depth := 0; depth <= 2*MaxFrames; depth++ {
		var id, want uint64
		var n int
		deep(depth, func() { id, want, n = callerIDAndCapture() })
		if id != want || id == 0 {
			t.Errorf("depth %d: CallerID %#x, Hash of Capture(1) one call deeper %#x (%d frames)", depth, id, want, n)
		}
	}
}

// callerIDAndCapture plays a lock: it hashes its caller's stack with
// CallerID and captures it from a helper, as Lock does on a miss.
//
//go:noinline
func callerIDAndCapture() (id, want uint64, n int) {
	id = CallerID()
	var s Stack
	captureVia(&s)
	return id, s.Hash(), s.N
}

// captureVia captures its caller's caller's stack: Capture(1) from here is
// Capture(0) from its caller.
//
//go:noinline
func captureVia(s *Stack) { s.Capture(1) }

//go:noinline
func deep(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	deep(n-1, f)
}

// TestCoarseNeverAhead checks that the coarse clock is never later than
// the monotonic clock, moves forward, and that its ticker stops by itself.
func TestCoarseNeverAhead(t *testing.T) {
	first := Coarse()
	if !CoarseRunning() {
		t.Fatal("the ticker does not run after a Coarse read")
	}
	prev := first
	for i := 0; i < 100000; i++ {
		c := Coarse()
		if n := Nanotime(); c > n {
			t.Fatalf("Coarse %d is later than Nanotime %d", c, n)
		}
		if c < prev {
			t.Fatalf("Coarse went back from %d to %d", prev, c)
		}
		prev = c
	}
	// It advances: wait (with a deadline) for a reading past the first.
	deadline := time.Now().Add(10 * time.Second)
	for Coarse() == first {
		if time.Now().After(deadline) {
			t.Fatal("Coarse did not advance in 10 s")
		}
		time.Sleep(CoarseTick)
	}
	// Unused, the ticker stops (coarseIdle after its last start).
	for CoarseRunning() {
		if time.Now().After(deadline.Add(coarseIdle)) {
			t.Fatal("the ticker still runs 10 s after the last read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if coarse.now.Load()&1 == 0 {
		t.Error("a stopped ticker left the value marked fresh")
	}
}

func BenchmarkGoid(b *testing.B) {
	for b.Loop() {
		Goid()
	}
}

func BenchmarkCoarse(b *testing.B) {
	for b.Loop() {
		Coarse()
	}
}

func BenchmarkNanotime(b *testing.B) {
	for b.Loop() {
		Nanotime()
	}
}
