package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/procid"
)

// lifeRole joins the run, takes and releases a lock, and exits, closing its
// registry or not (LOCKWATCH_TEST_LIFE=close, exit); or joins and waits for
// its stdin to close (stay).
func lifeRole(dir string) int {
	r, err := lockreg.Open(dir, lockreg.Options{Role: "life"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	mode := os.Getenv("LOCKWATCH_TEST_LIFE")
	if mode == "stay" {
		fmt.Println("joined")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	m, err := r.Mutex("lock.life")
	if err == nil {
		err = m.Lock(context.Background())
	}
	if err == nil {
		err = m.Unlock()
	}
	if err == nil && mode == "close" {
		err = r.Close()
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// TestRunDirBoundedAttach: a holder is killed, then many short lives (half
// without Close) wrap a process table of four slots. The run directory
// keeps the files of the processes of the table and of those the run's
// records name (the dead holder, whose lock's holder record names it), no
// others; and attach still shows where the dead holder took the lock, from
// its stack dictionary.
func TestRunDirBoundedAttach(t *testing.T) {
	dir := rootRun(t)
	const slots = 4
	r, err := lockreg.Open(dir, lockreg.Options{MaxProcs: slots, MaxLocks: 4, MaxEvents: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c, _, out := child(t, "ab", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "locked")
	holder := c.Process.Pid
	c.Process.Kill()
	c.Wait()
	const lives = 3 * slots
	for i := 0; i < lives; i++ {
		mode := []string{"close", "exit"}[i%2]
		c, _, out := child(t, "life", dir, "LOCKWATCH_TEST_LIFE="+mode)
		expectLine(t, out, "done")
		c.Wait()
	}
	// The last one stays: the directory is as its reclaim left it.
	_, _, out = child(t, "life", dir, "LOCKWATCH_TEST_LIFE=stay")
	expectLine(t, out, "joined")

	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	named := map[procid.ID]bool{}
	for _, p := range s.Processes {
		named[p.Identity()] = true
	}
	for _, l := range s.Locks {
		if l.Holder != nil {
			named[l.Holder.Identity()] = true
		}
	}
	for _, e := range s.Events {
		named[procid.ID{PID: e.PID, Start: e.Start}] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	withFiles := map[procid.ID]bool{}
	for _, e := range ents {
		if id, ok := arena.ProcessOfFile(e.Name()); ok {
			withFiles[id] = true
			if !named[id] {
				t.Errorf("%s: a file of a process that nothing in the run names", e.Name())
			}
		}
	}
	// The table's four processes, the dead holder, and the last life
	// whose events are in the lock's ring.
	if len(withFiles) > slots+2 {
		t.Errorf("files of %d processes after %d lives; want at most %d", len(withFiles), lives+2, slots+2)
	}
	code, stdout, stderr := lockwatch(t, "attach", "-o", "json", dir)
	if code != ExitDeadlock {
		t.Fatalf("attach: exit %d\n%s", code, stderr)
	}
	rep := readReport(t, []byte(stdout))
	if len(rep.Findings) == 0 || rep.Findings[0].Holder == nil || rep.Findings[0].Holder.PID != holder {
		t.Fatalf("attach: findings %+v; want the dead holder %d", rep.Findings, holder)
	}
	if h := rep.Findings[0].Holder; h.Where == nil || h.Where.Func != "github.com/lockwatch/lockwatch/internal/app/cli.runRole" {
		t.Errorf("attach: the dead holder %+v (where %+v); want where it took the lock (runRole), from its stack dictionary", h, h.Where)
	}
}
