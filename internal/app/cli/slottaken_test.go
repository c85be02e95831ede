package cli

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// TestDeadHolderSlotTaken: a holder ("ab", holding lock.a) and a waiter
// ("ba", holding lock.b and waiting for lock.a) are SIGKILLed, then two
// processes join a run whose process table has three slots, taking the
// dead ones' slots. The report still names each dead process with the role
// it gave itself (from the info file it left), in the findings and in the
// processes table, and says that its slot was taken by a later process.
func TestDeadHolderSlotTaken(t *testing.T) {
	dir := rootRun(t)
	r, err := lockreg.Open(dir, lockreg.Options{MaxProcs: 3, MaxLocks: 4, MaxEvents: 16, Role: "main"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	holder, _, out := child(t, "ab", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "locked")
	waiter, in, out := child(t, "ba", dir)
	expectLine(t, out, "locked")
	fmt.Fprintln(in) // ba now waits for lock.a
	deadline := time.Now().Add(probablyStillBlocked)
	for !waits(t, dir, waiter.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never recorded its wait for lock.a", waiter.Process.Pid)
		}
		time.Sleep(quiescent)
	}
	// Live processes that a read's bound leaves out of the table it
	// returns are not former ones.
	s, err := arena.ReadSnapshotWith(dir, arena.ReadOptions{Processes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Processes) != 1 || len(s.Former) != 0 {
		t.Errorf("read with room for 1 process: %d processes, former %+v; want 1 and none former", len(s.Processes), s.Former)
	}
	holder.Process.Kill()
	holder.Wait()
	waiter.Process.Kill()
	waiter.Wait()
	for range 2 {
		_, _, out := child(t, "life", dir, "LOCKWATCH_TEST_LIFE=stay")
		expectLine(t, out, "joined")
	}
	if s, err = arena.ReadSnapshot(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		if p.PID == holder.Process.Pid || p.PID == waiter.Process.Pid {
			t.Fatalf("pid %d still has its slot %d; want it taken by a later process", p.PID, p.Slot)
		}
	}

	code, stdout, stderr := lockwatch(t, "attach", "-o", "json", dir)
	if code != ExitDeadlock {
		t.Fatalf("attach: exit %d\n%s", code, stderr)
	}
	rep := readReport(t, []byte(stdout))
	roles := map[int]string{holder.Process.Pid: "ab", waiter.Process.Pid: "ba"}
	found := 0
	for _, f := range rep.Findings {
		if f.Holder != nil && roles[f.Holder.PID] != "" {
			found++
			if f.Holder.Role != roles[f.Holder.PID] || f.Holder.Alive {
				t.Errorf("finding %s: holder %+v; want pid %d, role %q, dead", f.Kind, *f.Holder, f.Holder.PID, roles[f.Holder.PID])
			}
		}
	}
	if found == 0 {
		t.Errorf("findings %+v; want the dead holders %v", rep.Findings, roles)
	}
	for pid, role := range roles {
		i := slices.IndexFunc(rep.Processes, func(p report.ProcRow) bool { return p.PID == pid })
		if i < 0 {
			t.Errorf("pid %d (%s) not in the processes table: %+v", pid, role, rep.Processes)
			continue
		}
		p := rep.Processes[i]
		slot := slices.IndexFunc(p.Facts, func(f report.Fact) bool { return f.Name == "slot" })
		if p.Role != role || p.Alive || p.Exit != "died" || slot < 0 {
			t.Errorf("pid %d: %+v; want role %q, dead, died, its slot said taken", pid, p, role)
		}
	}
	_, table, _ := lockwatch(t, "attach", dir)
	for pid, role := range roles {
		for _, want := range []string{fmt.Sprintf("pid %d [%s] (dead)", pid, role), fmt.Sprintf("%d  slot taken by a later process", pid)} {
			if !strings.Contains(table, want) {
				t.Errorf("attach: no %q in\n%s", want, table)
			}
		}
	}
}

// waits reports whether pid has a waiter record in the run in dir.
func waits(t *testing.T, dir string, pid int) bool {
	t.Helper()
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(s.Waiters, func(w arena.Waiter) bool { return w.PID == pid })
}
