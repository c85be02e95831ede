package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/report"
)

// importOnly is testdata/importonly running: a program that changed only
// its sync import line (no probe), stuck.
type importOnly struct {
	pid            int
	holder, ga, gb int64 // muHeld's holder; the goroutines of the AB/BA pair
	bin            string
}

// buildImportOnly builds testdata/importonly once per test.
func buildImportOnly(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "importonly")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/importonly").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startImportOnly starts it with env added, once it says it is ready.
func startImportOnly(t *testing.T, bin string, env ...string) importOnly {
	t.Helper()
	p, _ := startImportOnlyArgs(t, bin, nil, env...)
	return p
}

// startImportOnlyArgs starts it with args and env added, once it says it
// is ready; with -leak, it returns the goroutine that exited holding
// muLeak.
func startImportOnlyArgs(t *testing.T, bin string, args []string, env ...string) (importOnly, int64) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	br := bufio.NewReader(stdout)
	p := importOnly{pid: cmd.Process.Pid, bin: bin}
	var leaked int64
	if slices.Contains(args, "-leak") {
		if _, err := fmt.Fscanf(br, "leaked %d\n", &leaked); err != nil {
			t.Fatalf("importonly: %v", err)
		}
	}
	if _, err := fmt.Fscanf(br, "ready %d %d %d\n", &p.holder, &p.ga, &p.gb); err != nil {
		t.Fatalf("importonly: %v", err)
	}
	go io.Copy(io.Discard, br)
	return p, leaked
}

// attachWaiters runs 'lockwatch attach -o json ARGS' until the report has
// n waiters (every goroutine of the program blocked).
func attachWaiters(t *testing.T, n int, args ...string) (*report.Report, int, string) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		code, out, errOut := lockwatch(t, append([]string{"attach", "-o", "json"}, args...)...)
		var r report.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("attach: exit %d, %v: %s%s", code, err, out, errOut)
		}
		if len(r.Waiters) == n {
			return &r, code, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d waiters; want %d:\n%s", probablyStillBlocked, len(r.Waiters), n, out)
		}
		time.Sleep(quiescent)
	}
}

// checkImportOnly checks a report of the program: its three locks held by
// the goroutines the drop-in recorded (exact, not inferred), the AB/BA
// loop a proven cycle, and no lock twice (the memory reader sees the
// drop-in mutexes' waiters too, at the same addresses).
func checkImportOnly(t *testing.T, p importOnly, r *report.Report) {
	t.Helper()
	if r.Has(report.InferredCycle) || !r.Has(report.Cycle) {
		t.Errorf("findings %+v; want a proven cycle, no inferred one", r.Findings)
	}
	for _, f := range r.Findings {
		if f.Kind != report.Cycle {
			continue
		}
		var gs []int64
		for _, st := range f.Cycle {
			gs = append(gs, st.Goroutine)
		}
		slices.Sort(gs)
		if want := []int64{min(p.ga, p.gb), max(p.ga, p.gb)}; !slices.Equal(gs, want) {
			t.Errorf("cycle of goroutines %v; want %v", gs, want)
		}
	}
	if len(r.Locks) != 3 {
		t.Errorf("%d locks; want muHeld and the pair, each once:\n%+v", len(r.Locks), r.Locks)
	}
	holders := map[int64]bool{}
	for _, l := range r.Locks {
		if l.Kind != "mutex" || l.Holder == nil || l.Holder.Inferred != "" || l.Holder.PID != p.pid || !strings.Contains(l.Name, "main.go:") {
			t.Errorf("lock %s (%s): holder %+v; want a drop-in mutex named by its site, held by a recorded (not inferred) holder", l.Name, l.Kind, l.Holder)
			continue
		}
		holders[l.Holder.Goroutine] = true
	}
	for _, g := range []int64{p.holder, p.ga, p.gb} {
		if !holders[g] {
			t.Errorf("goroutine %d holds no lock in the report; holders %v", g, holders)
		}
	}
}

// TestAttachImportOnly: a program that changed only its sync import line,
// in the drop-in's records mode, with no probe and no run, is diagnosed by
// 'lockwatch attach PID' from outside: the drop-in's exact holders, the
// AB/BA cycle proven, and the holder blocked on a channel as a stuck
// holder whose live stack is read from memory; in JSON and in the table.
func TestAttachImportOnly(t *testing.T) {
	p := startImportOnly(t, buildImportOnly(t), "LOCKWATCH_DIR=", "LOCKWATCH_DROPIN=records")
	pid := strconv.Itoa(p.pid)
	r, code, out := attachWaiters(t, 5, "--stuck-after=1ns", pid)
	if code != ExitDeadlock {
		t.Errorf("exit %d; want %d", code, ExitDeadlock)
	}
	checkImportOnly(t, p, r)
	stuck := false
	for _, f := range r.Findings {
		stuck = stuck || (f.Kind == report.StuckHolder && f.Holder != nil && f.Holder.Goroutine == p.holder)
	}
	if !stuck {
		t.Errorf("findings %+v; want muHeld's holder (goroutine %d) stuck", r.Findings, p.holder)
	}
	live := false
	for _, s := range r.Stacks {
		if s.Role == "holder" && s.Source == "memory" && slices.Equal(s.Goroutines, []int64{p.holder}) {
			live = strings.HasPrefix(s.State, "chan receive on 0x") && slices.ContainsFunc(s.Frames, func(f report.FrameJSON) bool { return f.Func == "main.holdAndBlock" })
		}
	}
	if !live {
		t.Errorf("no live stack of the holder, read from memory, blocked in main.holdAndBlock:\n%s", out)
	}

	code, table, errOut := lockwatch(t, "attach", pid)
	if code != ExitDeadlock || !strings.Contains(table, "CYCLE") || strings.Contains(table, "INFERRED") || strings.Contains(table, "(inferred)") {
		t.Errorf("attach: exit %d:\n%s%s", code, table, errOut)
	}
}

// TestAttachImportOnlyOwner: in the drop-in's default mode (the owner
// mode: each mutex keeps its holder's goroutine id, nothing else), 'lockwatch
// attach PID' reads the program's memory: each awaited drop-in mutex's
// holder from its owner word (recorded, not inferred), the AB/BA cycle
// proven, and a goroutine that exited holding a mutex reported as exited,
// not as anyone else. (No acquire site or time is recorded in this mode:
// a stuck holder is told only once the runtime has noted since when its
// goroutines wait.)
func TestAttachImportOnlyOwner(t *testing.T) {
	p, leaked := startImportOnlyArgs(t, buildImportOnly(t), []string{"-leak"}, "LOCKWATCH_DIR=", "LOCKWATCH_DROPIN=")
	pid := strconv.Itoa(p.pid)
	r, code, out := attachWaiters(t, 6, "--stuck-after=1ns", pid)
	if code != ExitDeadlock {
		t.Errorf("exit %d; want %d", code, ExitDeadlock)
	}
	if r.Has(report.InferredCycle) || !r.Has(report.Cycle) {
		t.Errorf("findings %+v; want a proven cycle, no inferred one", r.Findings)
	}
	if len(r.Locks) != 4 {
		t.Errorf("%d locks; want muHeld, muLeak and the pair, each once:\n%s", len(r.Locks), out)
	}
	holders := map[int64]report.LockRow{}
	for _, l := range r.Locks {
		if l.Holder == nil || l.Holder.Inferred != "" || l.Holder.PID != p.pid {
			t.Errorf("lock %s (%s): holder %+v; want a recorded (not inferred) holder", l.Name, l.Kind, l.Holder)
			continue
		}
		holders[l.Holder.Goroutine] = l
	}
	for _, g := range []int64{p.holder, p.ga, p.gb, leaked} {
		if _, ok := holders[g]; !ok {
			t.Errorf("goroutine %d holds no lock in the report:\n%s", g, out)
		}
	}
	gone := func(l report.LockRow) bool {
		return slices.ContainsFunc(l.Facts, func(f report.Fact) bool {
			return f.Name == "owner word" && strings.Contains(f.Value, "exited holding it")
		})
	}
	for g, l := range holders {
		if gone(l) != (g == leaked) {
			t.Errorf("lock %s held by goroutine %d (leaked %d): facts %+v", l.Name, g, leaked, l.Facts)
		}
	}
}

// TestImportOnlyInRun: under 'lockwatch run' the same program joins the
// run by itself (its drop-in arena is a file of the run directory): attach
// PID reads it there, and run finds the deadlock and kills the run.
func TestImportOnlyInRun(t *testing.T) {
	bin := buildImportOnly(t)
	t.Run("attach", func(t *testing.T) {
		dir := runDir(t)
		p := startImportOnly(t, bin, "LOCKWATCH_DIR="+dir)
		r, code, _ := attachWaiters(t, 5, strconv.Itoa(p.pid))
		if code != ExitDeadlock {
			t.Errorf("exit %d; want %d", code, ExitDeadlock)
		}
		checkImportOnly(t, p, r)
		if len(r.Processes) != 1 || r.Processes[0].PID != p.pid || !r.Processes[0].Alive {
			t.Errorf("processes %+v; want pid %d, alive", r.Processes, p.pid)
		}
	})
	t.Run("run", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "report.json")
		code, _, errOut := lockwatch(t, "run", "--on-deadlock=kill", "-o", "json", "--report", file, "--", bin, "-exit-after", (2 * probablyStillBlocked).String())
		if code != ExitRunDeadlock {
			t.Fatalf("run: exit %d; want %d:\n%s", code, ExitRunDeadlock, errOut)
		}
		if strings.Contains(errOut, "not joined") || strings.Contains(errOut, "no process has joined") {
			t.Errorf("run says the program did not join:\n%s", errOut)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var r report.Report
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if !r.Has(report.Cycle) || r.Has(report.InferredCycle) {
			t.Errorf("findings %+v; want a proven cycle", r.Findings)
		}
	})
}
