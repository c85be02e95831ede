package lockreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

// modes runs a test twice: with the kernel's robust list in the child
// processes, and with the liveness-polling fallback.
func modes(t *testing.T, f func(t *testing.T, robust bool)) {
	t.Run("robust", func(t *testing.T) { f(t, true) })
	t.Run("polling", func(t *testing.T) { f(t, false) })
}

func TestMutualExclusionAcrossProcesses(t *testing.T) {
	dir := runDir(t)
	const procs, each = 4, 1500
	var cs []*child
	for i := 0; i < procs; i++ {
		// Half the processes use each mode: the protocol must not care.
		cs = append(cs, startRole(t, i%2 == 0, "counter", dir, "-", strconv.Itoa(each)))
	}
	for _, c := range cs {
		c.expect("done")
	}
	b, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(procs*each) {
		t.Fatalf("counter = %s; want %d", got, procs*each)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l := s.Locks[0]; l.Held() || l.Waiting != 0 {
		t.Errorf("after all processes finished: got %+v; want free, no waiters", l)
	}
}

// killHolderOfWaited starts a holder of the test lock and a waiter for it
// (with the policy), waits until the waiter's record shows it waiting, then
// SIGKILLs the holder. It returns the run directory, the dead holder's pid
// and the waiter.
func killHolderOfWaited(t *testing.T, robust bool, policy string) (dir string, hpid int, waiter *child) {
	dir = runDir(t)
	holder := startRole(t, robust, "hold", dir)
	holder.expect("held")
	waiter = startRole(t, robust, "wait", dir, policy)
	waiter.expect("waiting")
	waitForWaiter(t, dir, waiter.pid())
	holder.kill()
	return dir, holder.pid(), waiter
}

func TestHolderKilledRecover(t *testing.T) {
	modes(t, func(t *testing.T, robust bool) {
		dir, hpid, waiter := killHolderOfWaited(t, robust, "recover")
		waiter.expect("ownerdead")
		waiter.expect("relocked")
		s, _ := arena.ReadSnapshot(dir)
		kinds := eventKinds(s)
		if !strings.Contains(kinds, fmt.Sprintf("owner-died(%d)", hpid)) || !strings.Contains(kinds, "recovered") {
			t.Errorf("got events %s; want owner-died naming the dead holder %d, and recovered", kinds, hpid)
		}
	})
}

func TestHolderKilledStall(t *testing.T) {
	modes(t, func(t *testing.T, robust bool) {
		dir, hpid, waiter := killHolderOfWaited(t, robust, "stall")
		// The hook keeps firing; one of its calls must name the dead holder.
		for {
			line := waiter.expect("stuck")
			var ev struct {
				Holder    int
				Alive     bool
				OwnerDied bool
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "stuck ")), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Holder != hpid {
				t.Fatalf("hook named holder %d; want %d (%s)", ev.Holder, hpid, line)
			}
			if !ev.Alive {
				break
			}
		}
		s, err := arena.ReadSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		l := s.Locks[0]
		if l.Holder == nil || l.Holder.PID != hpid {
			t.Fatalf("snapshot lock %+v; want the dead holder's record (pid %d)", l, hpid)
		}
		if st, _ := proc.Check(l.Holder.Identity()); !l.OwnerDied && !st.Dead() {
			t.Errorf("snapshot: OwnerDied=%v, holder status %v; want the death visible", l.OwnerDied, st)
		}
		if robust && !l.OwnerDied {
			t.Error("the kernel did not mark OWNER_DIED")
		}
		// Stall: the waiter is still blocked.
		select {
		case line := <-waiter.lines:
			if strings.HasPrefix(line, "acquired") || strings.HasPrefix(line, "ownerdead") {
				t.Fatalf("stalling waiter took the dead holder's lock: %s", line)
			}
		case <-time.After(quiescent):
		}
		if st, _ := proc.Check(proc.Identity{PID: waiter.pid()}); st != proc.Alive {
			t.Fatalf("waiter is %v; want alive and blocked", st)
		}
	})
}

func TestKilledWaiterIsStale(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	m, _ := r.Mutex("test.lock")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock()
	waiter := startRole(t, false, "wait", dir)
	waiter.expect("waiting")
	w := waitForWaiter(t, dir, waiter.pid())
	if st, _ := proc.Check(w.Identity()); st != proc.Alive {
		t.Fatalf("live waiter checks as %v", st)
	}
	waiter.kill()
	s, _ := arena.ReadSnapshot(dir)
	var found *arena.Waiter
	for i := range s.Waiters {
		if s.Waiters[i].PID == waiter.pid() {
			found = &s.Waiters[i]
		}
	}
	if found == nil {
		t.Fatal("the killed waiter's record vanished; want it kept, recognisable as stale")
	}
	if st, _ := proc.Check(found.Identity()); !st.Dead() {
		t.Errorf("killed waiter checks as %v; want dead", st)
	}
	if found.LockName != "test.lock" || found.Start == 0 {
		t.Errorf("stale record %+v; want lock test.lock and a start time", found)
	}
}

func TestReusedPIDIsNotTheHolder(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{Policy: Recover, PollInterval: time.Millisecond})
	m, _ := r.Mutex("x")
	// Another live process (here: a child of ours) has the pid that the
	// record names, but not the start time: the recorded holder is gone.
	other := startRole(t, false, "hold", runDir(t))
	other.expect("held")
	st, err := proc.ReadStat(other.pid())
	if err != nil {
		t.Fatal(err)
	}
	opid := uint32(other.pid())
	m.s.Word.Store(opid)
	m.s.Holder.Set(0, opid, st.Start+1, 7, 0, nanotime())
	if got := r.status(opid, st.Start+1); got != proc.Reused {
		t.Fatalf("status of pid %d with another start time = %v; want reused", opid, got)
	}
	if err := m.Lock(context.Background()); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Lock under Recover of a reused-pid holder: got %v; want ErrOwnerDead", err)
	}
	_ = m.Unlock()

	// With the right start time the same pid is the live holder.
	m.s.Word.Store(opid)
	m.s.Holder.Set(0, opid, st.Start, 7, 0, nanotime())
	if got := r.status(opid, st.Start); got != proc.Alive {
		t.Fatalf("status of the live holder = %v; want alive", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), quiescent)
	defer cancel()
	if err := m.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a live holder's lock: got %v; want to keep waiting", err)
	}
	m.s.Word.Store(0)
}

func TestConcurrentOpenGetsOneArena(t *testing.T) {
	dir := runDir(t)
	var cs []*child
	for i := 0; i < 8; i++ {
		cs = append(cs, startRole(t, i%2 == 0, "open", dir))
	}
	inodes := map[string]bool{}
	for _, c := range cs {
		inodes[c.expect("inode")] = true
	}
	if len(inodes) != 1 {
		t.Fatalf("8 processes saw %d arenas: %v", len(inodes), inodes)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Processes) != 8 || len(s.Locks) != 1 {
		t.Errorf("got %d processes and %d locks; want 8 and 1", len(s.Processes), len(s.Locks))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".arena-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// waitForWaiter polls the arena until pid has a waiter record.
func waitForWaiter(t *testing.T, dir string, pid int) arena.Waiter {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for time.Now().Before(deadline) {
		s, err := arena.ReadSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range s.Waiters {
			if w.PID == pid {
				return w
			}
		}
		time.Sleep(time.Millisecond) // polling the arena: the condition is the waiter record
	}
	t.Fatalf("pid %d never recorded as a waiter", pid)
	return arena.Waiter{}
}

func eventKinds(s *arena.Snapshot) string {
	var b strings.Builder
	for _, e := range s.Events {
		fmt.Fprintf(&b, "%s(%d) ", e.Kind, e.PID)
	}
	return b.String()
}
