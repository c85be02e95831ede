package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/source/goprocsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// TestGoproc: the memory reader's source passes the suite, its locks the
// sync.Mutex and sync.RWMutex of a plain Go program (testdata/syncprog,
// standard sync only) read from its memory, their holders inferred from
// the evidence of a pending deferred unlock (a declared capability:
// lockstatetest.Setup.Inferred).
func TestGoproc(t *testing.T) { lockstatetest.Run(t, goprocHarness{}) }

type goprocHarness struct{}

// syncprog is testdata/syncprog, built once per test binary.
var syncprog = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "syncprog")
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "syncprog")
	cmd := exec.Command("go", "build", "-o", exe, "./testdata/syncprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building testdata/syncprog: %v\n%s", err, out)
	}
	return exe, nil
})

func (goprocHarness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	a := lockstate.Key{Kind: goprocsrc.KindMutex, Name: "main.mutexA"}
	b := lockstate.Key{Kind: goprocsrc.KindMutex, Name: "main.mutexB"}
	rw := lockstate.Key{Kind: goprocsrc.KindRWMutex, Name: "main.rwB"}
	setup := &lockstatetest.Setup{Inferred: true}
	var role string
	want := map[lockstate.Key]int{}
	switch s {
	case lockstatetest.DeadHolder:
		return nil, lockstatetest.Cannot("a sync lock lives in one process's memory: its holder dies with every waiter, and no reader is left to see it")
	case lockstatetest.LostLock:
		return nil, lockstatetest.Cannot("nothing takes a sync lock from its holder: it is held until unlocked")
	case lockstatetest.Cycle:
		role, want[a], want[b] = "cycle", 1, 1
		setup.Locks = []lockstate.Key{a, b}
	case lockstatetest.CycleKinds:
		role, want[a], want[rw] = "cycle-kinds", 1, 1
		setup.Locks = []lockstate.Key{a, rw}
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		role, want[a] = "stuck", 1
		setup.Lock = a
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = 50 * time.Millisecond
		}
	case lockstatetest.Readers:
		role, want[rw] = "readers", 1
		setup.Lock = rw
	case lockstatetest.SelfDeadlock:
		role, want[a] = "self", 1
		setup.Lock = a
	}
	exe, err := syncprog()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, role)
	startReady(t, cmd)
	src, err := goprocsrc.Attach(cmd.Process.Pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	id := src.ID()
	if len(setup.Locks) > 0 {
		setup.Loop = []procid.ID{id}
	}
	setup.Holder, setup.Waiter = id, id
	waitNoted(t, src, want, 2*setup.StuckAfter)
	setup.Sources = report.Sources{Locks: []lockstate.Source{src}, Host: report.LocalHost{}}
	return setup, nil
}

// waitNoted reads src until each lock of want has its number of waiters,
// every waiter's start noted by a garbage collection (the program runs one
// every few milliseconds) more than age ago.
func waitNoted(t *testing.T, src lockstate.Source, want map[lockstate.Key]int, age time.Duration) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		snap, err := src.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := map[lockstate.Key]int{}
		done := true
		for _, l := range snap.Locks {
			got[l.Key()] = len(l.Waiters)
			for _, w := range l.Waiters {
				done = done && !w.Since.IsZero() && snap.Taken.Sub(w.Since) > age
			}
		}
		for k, n := range want {
			done = done && got[k] >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiters %v; want %v, each noted more than %s ago", got, want, age)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
