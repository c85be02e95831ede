package seqlock

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rec is a record under the protocol: a writer alternates two identities,
// (1, 1, 1) and (2, 2, 2); a copy that mixes them is torn.
type rec struct {
	seq     Seq32
	a       atomic.Uint32
	b, c    atomic.Uint64
	ring    Seq64 // a second record, written at chosen odd values
	x, y, z atomic.Int64
}

func (r *rec) write(id uint32, t uint64) {
	end := r.seq.Begin()
	Store32(&r.a, id)
	Store64(&r.b, uint64(id))
	Store64(&r.c, uint64(id))
	r.seq.End(end)
	r.ring.BeginAt(2*t + 1)
	StoreInt64(&r.x, int64(id))
	StoreInt64(&r.y, int64(id))
	StoreInt64(&r.z, int64(id))
	r.ring.End(2*t + 2)
}

// tornReads has a writer alternate the two identities while this goroutine
// reads both records at least n times, and on (up to a bound) until it has
// seen both identities in each: a run that saw neither proved nothing (the
// writer's odd stores removed, or a writer that never ran beside the
// reader).
func tornReads(n int) (torn int, seen [2][2]int) {
	var r rec
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for t := uint64(0); ; t++ {
			select {
			case <-stop:
				return
			default:
			}
			r.write(uint32(1+t%2), t)
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	all := func() bool { return seen[0][0] > 0 && seen[0][1] > 0 && seen[1][0] > 0 && seen[1][1] > 0 }
	for i := 0; i < n || (!all() && (i%1024 != 0 || time.Now().Before(deadline))); i++ {
		if i >= n && i%1024 == 0 {
			runtime.Gosched()
		}
		var a uint32
		var b, c uint64
		if _, ok := r.seq.Read(1, func() { a, b, c = r.a.Load(), r.b.Load(), r.c.Load() }); ok && a != 0 {
			if uint64(a) != b || b != c {
				torn++
			} else {
				seen[0][a-1]++
			}
		}
		if v := r.ring.Load(); v&1 == 0 && v != 0 {
			x, y, z := r.x.Load(), r.y.Load(), r.z.Load()
			if r.ring.Valid(v) {
				if x != y || y != z {
					torn++
				} else {
					seen[1][x-1]++
				}
			}
		}
	}
	close(stop)
	<-done
	return torn, seen
}

const childEnv = "SEQLOCK_TEST_CHILD"

// TestNeverTorn checks, in this build and in an optimized child built
// without the race detector (under which the odd store is a call the
// compiler cannot remove), that no torn copy is ever kept.
func TestNeverTorn(t *testing.T) {
	check := func(what string, torn int, seen [2][2]int) {
		t.Helper()
		if torn != 0 || seen[0][0] == 0 || seen[0][1] == 0 || seen[1][0] == 0 || seen[1][1] == 0 {
			t.Errorf("%s: %d torn copies kept, complete copies of each identity %v; want 0 torn and every identity seen",
				what, torn, seen)
		}
	}
	torn, seen := tornReads(200_000)
	check("this build", torn, seen)
	if os.Getenv(childEnv) != "" {
		return
	}
	if raceEnabled {
		bin := t.TempDir() + "/seqlock.test"
		cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building the test without the race detector: %v\n%s", err, out)
		}
		cmd = exec.Command(bin, "-test.run=^TestNeverTorn$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestNeverTorn") {
			t.Errorf("the optimized child: %v\n%s", err, out)
		}
	}
}

func TestBeginAfterAWriterDied(t *testing.T) {
	var s Seq32
	s.BeginAt(5) // a writer opened a write and died
	if _, ok := s.Read(3, func() { t.Error("a record mid-write was copied") }); ok {
		t.Error("Read kept a copy of a record mid-write")
	}
	end := s.Begin()
	if got := s.Load(); got != 7 || end != 8 {
		t.Errorf("Begin after an odd 5: sequence %d, end %d; want 7, 8", got, end)
	}
	s.End(end)
	copied := false
	if v, ok := s.Read(1, func() { copied = true }); !ok || v != 8 || !copied {
		t.Errorf("Read after End: %d, %v (copied %v); want 8, true, copied", v, ok, copied)
	}
	if s.Begin() != 10 {
		t.Errorf("Begin from an even 8 did not end at 10")
	}
}

func TestClaim(t *testing.T) {
	var s Seq64
	if !s.Claim(0, 1) || s.Claim(0, 1) {
		t.Fatal("of two claims from 0, not exactly the first won")
	}
	if s.Valid(1) != true || s.Valid(0) {
		t.Error("Valid does not compare the sequence")
	}
	s.End(2)
	if s.Load() != 2 {
		t.Errorf("sequence %d after End(2)", s.Load())
	}
}
