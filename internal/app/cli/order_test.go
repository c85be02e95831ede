package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
)

// orderEnv holds an order role's script: groups separated by ";", each
// taken by a goroutine of its own after the previous one ended, as the
// locks it names in order, then released in reverse ("lock.a,lock.b;lock.b,lock.a").
const orderEnv = "LOCKWATCH_CLI_TEST_ORDER"

// orderRole runs the script of orderEnv in the run of dir, or of
// LOCKWATCH_DIR under lockwatch run, then closes its registry.
func orderRole(dir string) int {
	if d := os.Getenv(probe.EnvDir); d != "" {
		dir = d
	}
	r, err := lockreg.Open(dir, lockreg.Options{Role: "order"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for _, group := range strings.Split(os.Getenv(orderEnv), ";") {
		done := make(chan error)
		go func() { done <- takeInOrder(r, strings.Split(group, ",")) }()
		if err := <-done; err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	if err := r.Close(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("done")
	return 0
}

func takeInOrder(r *lockreg.Registry, names []string) error {
	var ms []*lockreg.Mutex
	for _, n := range names {
		m, err := r.Mutex(n)
		if err != nil {
			return err
		}
		if err := m.Lock(context.Background()); err != nil {
			return err
		}
		ms = append(ms, m)
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if err := ms[i].Unlock(); err != nil {
			return err
		}
	}
	return nil
}

// orderChildren runs one order process per script, one after the other,
// each to its end, and returns their pids.
func orderChildren(t *testing.T, dir string, scripts ...string) []int {
	var pids []int
	for _, s := range scripts {
		cmd, _, out := child(t, "order", dir, orderEnv+"="+s)
		expectLine(t, out, "done")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("order process %q: %v", s, err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	return pids
}

func lockOrders(r *report.Report) []report.Finding {
	var out []report.Finding
	for _, f := range r.Findings {
		if f.Kind == report.LockOrder {
			out = append(out, f)
		}
	}
	return out
}

// steps renders a lock-order finding's loop as "from>to@pid".
func steps(f report.Finding) []string {
	var out []string
	for _, st := range f.Order {
		out = append(out, fmt.Sprintf("%s>%s@%d", st.From, st.To, st.PID))
	}
	return out
}

// Two processes take lock.a then lock.b, and lock.b then lock.a, one after
// the other: never overlapping, both exited. attach reports the inversion,
// with both pids and both stacks of each edge, and exits 0: a warning.
func TestAttachLockOrderTwoProcesses(t *testing.T) {
	dir := runDir(t)
	pids := orderChildren(t, dir, "lock.a,lock.b", "lock.b,lock.a")
	code, stdout, stderr := lockwatch(t, "attach", "-o", "json", dir)
	if code != ExitOK {
		t.Fatalf("attach: exit %d; want 0 (a warning)\n%s", code, stderr)
	}
	fs := lockOrders(readReport(t, []byte(stdout)))
	if len(fs) != 1 {
		t.Fatalf("got lock-order findings %+v; want one", fs)
	}
	f := fs[0]
	want := []string{fmt.Sprintf("lock.a>lock.b@%d", pids[0]), fmt.Sprintf("lock.b>lock.a@%d", pids[1])}
	if got := steps(f); !slices.Equal(got, want) {
		t.Errorf("got loop %v; want %v", got, want)
	}
	for _, st := range f.Order {
		if st.Goroutine == 0 || len(st.Stack) == 0 || len(st.HeldStack) == 0 || st.Where == nil || st.HeldAt == nil {
			t.Errorf("step %s>%s: want a goroutine, both stacks and both call sites; got %+v", st.From, st.To, st)
		}
		if st.Where != nil && !strings.Contains(st.Where.Func, "takeInOrder") {
			t.Errorf("step %s>%s taken at %s; want takeInOrder", st.From, st.To, st.Where.Func)
		}
	}
	if !strings.HasPrefix(f.Next, "take lock.a before lock.b everywhere; the lock.b-then-lock.a order is taken at cli.takeInOrder order_test.go:") {
		t.Errorf("next: got %q", f.Next)
	}
	// As a table.
	_, stdout, _ = lockwatch(t, "attach", dir)
	for _, w := range []string{"LOCK-ORDER", "lock.a -> lock.b", "lock.b -> lock.a", "took lock.a at cli.takeInOrder"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("table report lacks %q:\n%s", w, stdout)
		}
	}
}

// Three processes take A->B, B->C and C->A: one loop of three edges.
func TestAttachLockOrderThreeProcesses(t *testing.T) {
	dir := runDir(t)
	pids := orderChildren(t, dir, "A,B", "B,C", "C,A")
	_, stdout, _ := lockwatch(t, "attach", "-o", "json", dir)
	fs := lockOrders(readReport(t, []byte(stdout)))
	if len(fs) != 1 {
		t.Fatalf("got lock-order findings %+v; want one", fs)
	}
	want := []string{fmt.Sprintf("A>B@%d", pids[0]), fmt.Sprintf("B>C@%d", pids[1]), fmt.Sprintf("C>A@%d", pids[2])}
	if got := steps(fs[0]); !slices.Equal(got, want) {
		t.Errorf("got loop %v; want %v", got, want)
	}
}

// No finding: a consistent order, locks never nested, a lock re-taken
// after its release, and D released before E then D are taken (an edge
// D -> E kept by mistake would close the loop E -> D).
func TestAttachNoLockOrder(t *testing.T) {
	dir := runDir(t)
	orderChildren(t, dir, "A,B,C;A,C;B,C", "A;B;C;A", "A;A;B,C", "D;E,D;E")
	_, stdout, _ := lockwatch(t, "attach", "-o", "json", dir)
	if fs := lockOrders(readReport(t, []byte(stdout))); len(fs) != 0 {
		t.Errorf("got %+v; want no lock-order finding", fs)
	}
}

// lockwatch run reports the inversion in its final report when PROGRAM
// ended cleanly; its exit status stays PROGRAM's unless --fail-on=lock-order.
func TestRunLockOrder(t *testing.T) {
	runLockOrder(t, roleEnv+"=order", orderEnv, "lock.a", "lock.b")
}

// runLockOrder runs 'lockwatch run' on the test binary in the role env,
// whose script (in the variable script) takes locks a and b in each order
// or in one order, with and without --fail-on=lock-order.
func runLockOrder(t *testing.T, role, script, a, b string) {
	lw, _ := bins(t)
	inverted, consistent := a+","+b+";"+b+","+a, a+","+b+";"+a+","+b
	for _, tc := range []struct {
		name   string
		flags  []string
		script string
		code   int
		found  bool
	}{
		{"warning", nil, inverted, 0, true},
		{"fail-on", []string{"--fail-on=lock-order"}, inverted, ExitLockOrder, true},
		{"fail-on, consistent", []string{"--fail-on=lock-order"}, consistent, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run"}, tc.flags...)
			args = append(args, "--", os.Args[0], "-test.run=^$")
			cmd := exec.Command(lw, args...)
			cmd.Env = append(cleanEnv(), role, script+"="+tc.script)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if code := exitCodeOf(t, err); code != tc.code {
				t.Errorf("exit %d; want %d\n%s", code, tc.code, out.String())
			}
			finding := fmt.Sprintf("LOCK-ORDER lock order %s -> %s -> %s can deadlock", a, b, a)
			if got := strings.Contains(out.String(), finding); got != tc.found {
				t.Errorf("report printed: %v; want %v\n%s", got, tc.found, out.String())
			}
		})
	}
}

// watch prints a new report when an inversion appears, and exits 0 at
// Ctrl-C: a lock-order finding is a warning.
func TestWatchLockOrder(t *testing.T) {
	dir := runDir(t)
	// A process of the run stays, so that the run has not ended when the
	// first order process has (watch would end with it).
	_, _, joined := child(t, "joiner", dir, probe.EnvDir+"="+dir)
	expectLine(t, joined, "joined")
	orderChildren(t, dir, "lock.a,lock.b")
	w := startWatchJSON(t, dir)
	next := w.next
	if fs := lockOrders(next()); len(fs) != 0 {
		t.Fatalf("one order only: got %+v; want no lock-order finding", fs)
	}
	pids := orderChildren(t, dir, "lock.b,lock.a")
	// The new process shows in reports before its edge does: read on
	// until the finding (watch is ended, and next fails, if it never comes).
	stop := time.AfterFunc(probablyStillBlocked, w.cancel)
	defer stop.Stop()
	var fs []report.Finding
	for len(fs) == 0 {
		fs = lockOrders(next())
	}
	if len(fs) != 1 || len(fs[0].Order) != 2 || fs[0].Order[1].PID != pids[0] {
		t.Errorf("after the inverse order: got %+v; want one loop whose second edge is pid %d's", fs, pids[0])
	}
	w.stop("with a lock-order finding")
}
