//go:build stress

package stress

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/procid"
)

// churnCount is how many restarts and Open/Close pairs the churn makes:
// 100,000 (issue 8), or $LOCKWATCH_STRESS_CHURN.
func churnCount(t testing.TB) int {
	if s := os.Getenv("LOCKWATCH_STRESS_CHURN"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("LOCKWATCH_STRESS_CHURN=%q: %v", s, err)
		}
		return n
	}
	return 100_000
}

// TestChurnRestarts: 100,000 sequential process restarts in one run (with
// the default capacities: 1,024 process slots). Each must join the run;
// this needs the slots of dead processes to be reclaimed (issue 8 item 3).
func TestChurnRestarts(t *testing.T) {
	n := churnCount(t)
	bin := filepath.Join(t.TempDir(), "restart")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/restart")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "run")
	began := time.Now()
	for i := range n {
		args := []string{dir}
		if i%2 == 1 {
			args = []string{"-die", dir} // every second one dies without Close
		}
		out, err := exec.Command(bin, args...).Output()
		if err != nil || len(out) > 0 {
			t.Fatalf("restart %d of %d: %v: %s", i+1, n, err, out)
		}
		if (i+1)%10_000 == 0 {
			t.Logf("churn: %d restarts of %d in %v", i+1, n, time.Since(began).Round(time.Second))
		}
	}
	took := time.Since(began)
	t.Logf("churn: %d sequential restarts in one run in %v (%v each)", n, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Microsecond))
	// The run directory holds files of the processes of the table and of
	// those the lock's event ring names (16 events, 8 of holders: the
	// last lives'), not of every life.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	procs := map[procid.ID]bool{}
	for _, e := range ents {
		if id, ok := arena.ProcessOfFile(e.Name()); ok {
			procs[id] = true
		}
	}
	t.Logf("churn: the run directory holds %d files of %d processes", len(ents), len(procs))
	if bound := 1024 + 16; len(procs) > bound {
		t.Errorf("the run directory holds files of %d processes after %d lives; want at most %d (the process table and the event ring)", len(procs), n, bound)
	}
}

// TestChurnOpenClose: 100,000 Open/Close pairs in one process, each taking
// and releasing a lock. Each must succeed: a process that reopens takes its
// own slot back, and Close releases every mapping (issue 8 item 3).
func TestChurnOpenClose(t *testing.T) {
	n := churnCount(t)
	dir := filepath.Join(t.TempDir(), "run")
	ctx := context.Background()
	began := time.Now()
	for i := range n {
		r, err := lockreg.Open(dir, lockreg.Options{})
		if err != nil {
			t.Fatalf("Open %d of %d: %v", i+1, n, err)
		}
		m, err := r.Mutex("churn")
		if err == nil {
			err = m.Lock(ctx)
		}
		if err == nil {
			err = m.Unlock()
		}
		if err := errors.Join(err, r.Close()); err != nil {
			t.Fatalf("pair %d of %d: %v", i+1, n, err)
		}
	}
	took := time.Since(began)
	t.Logf("churn: %d Open/Close pairs in one process in %v (%v each)", n, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Microsecond))
}
