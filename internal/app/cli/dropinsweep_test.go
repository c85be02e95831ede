package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/sync"
)

// dropinLifeRole: the probe started by init (LOCKWATCH_DIR), a drop-in
// mutex locked and unlocked (the process's drop-in arena file is in the
// run directory), then an exit with the probe closed or not
// (LOCKWATCH_TEST_LIFE=close, exit), or a stay until stdin closes.
func dropinLifeRole() int {
	a := probe.Running()
	if a == nil {
		fmt.Println("error no probe")
		return 1
	}
	var mu sync.Mutex
	lives := 0
	mu.Lock()
	lives++
	mu.Unlock()
	switch os.Getenv("LOCKWATCH_TEST_LIFE") {
	case "stay":
		fmt.Println("joined", lives)
		_, _ = os.Stdin.Read(make([]byte, 1))
		return 0
	case "close":
		if err := a.Close(); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	fmt.Println("done")
	return 0
}

// dropinFiles lists the pids of dir's drop-in arena files.
func dropinFiles(t *testing.T, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		if pid, ok := arena.DropinPID(e.Name()); ok {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDropinFilesBoundedBySlots: many short lives of processes with the
// probe and the drop-in wrap a process table of four slots. Their drop-in
// arena files (one per process, not per slot) go with their other files:
// each one left is of a live process or of a pid the run's records name.
func TestDropinFilesBoundedBySlots(t *testing.T) {
	dir := rootRun(t)
	const slots = 4
	r, err := lockreg.Open(dir, lockreg.Options{MaxProcs: slots, MaxLocks: 4, MaxEvents: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	const lives = 2 * slots
	for i := 0; i < lives; i++ {
		mode := []string{"close", "exit"}[i%2]
		c, _, out := child(t, "dropinlife", dir, probe.EnvDir+"="+dir, "LOCKWATCH_TEST_LIFE="+mode)
		expectLine(t, out, "done")
		c.Wait()
	}
	// The last one stays: the directory is as its reclaim left it.
	_, _, out := child(t, "dropinlife", dir, probe.EnvDir+"="+dir, "LOCKWATCH_TEST_LIFE=stay")
	expectLine(t, out, "joined 1")

	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	named := map[int]bool{}
	for _, p := range s.Processes {
		named[p.PID] = true
	}
	for _, l := range s.Locks {
		if l.Holder != nil {
			named[l.Holder.PID] = true
		}
	}
	for _, w := range s.Waiters {
		named[w.PID] = true
	}
	for _, e := range s.Events {
		named[e.PID] = true
	}
	pids := dropinFiles(t, dir)
	for _, pid := range pids {
		if _, err := proc.ReadStat(pid); err != nil && !named[pid] {
			t.Errorf("dropin-%d.arena: the file of a process gone that nothing in the run names", pid)
		}
	}
	if len(pids) > slots+1 {
		t.Errorf("%d drop-in arena files after %d lives on %d slots; want at most %d", len(pids), lives+1, slots, slots+1)
	}
}

// TestDropinFilesSweptUnderRun: a run of many short-lived processes that
// only changed their import line (no probe, no slot of a process table)
// keeps no drop-in arena file of those gone; the last line still counts
// every process that joined.
func TestDropinFilesSweptUnderRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "shortlived")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/shortlived").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const lives = 12
	file := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := lockwatch(t, "run", "--keep", "-o", "json", "--report", file, "--",
		"sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s || exit 1; i=$((i+1)); done", lives, bin))
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(r.Run) })
	if pids := dropinFiles(t, r.Run); len(pids) != 0 {
		t.Errorf("the run keeps the drop-in arena files of %d processes gone: %v", len(pids), pids)
	}
	want := fmt.Sprintf("%d processes joined the run by importing lockwatch's sync", lives)
	if len(r.Notes) == 0 || !strings.Contains(r.Notes[len(r.Notes)-1], want) {
		t.Errorf("the report's last note is not %q: %q", want, r.Notes)
	}
}
