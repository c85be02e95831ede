package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// rootRun makes a run directory under the default root (the tests' own
// temporary root), removed at the end of the test.
func rootRun(t *testing.T) string {
	t.Helper()
	root, err := arena.DefaultRoot()
	if err != nil {
		t.Skip(err)
	}
	dir, err := arena.NewRunDir(root.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestPSElsewhereAndUnreadable: ps lists a probed process whose run is
// outside the default root (found by its environment), and a run it
// cannot read, with why: whole in JSON, cut short in the table.
func TestPSElsewhereAndUnreadable(t *testing.T) {
	t.Setenv("COLUMNS", "200")
	elsewhere := runDir(t) // under the test's temporary directory, not the root
	j, jin, jout := child(t, "joiner", elsewhere, probe.EnvDir+"="+elsewhere)
	expectLine(t, jout, "joined")
	defer jin.Close()

	bad := rootRun(t)
	r, err := lockreg.Open(bad, lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := os.Truncate(filepath.Join(bad, arena.ArenaFile), 4096); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := lockwatch(t, "ps", "-o", "json")
	if code != ExitOK {
		t.Fatalf("ps -o json: exit %d\n%s", code, stderr)
	}
	var out psOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("ps -o json: %v\n%s", err, stdout)
	}
	var why string
	found := false
	for _, run := range out.Runs {
		if run.Dir == bad {
			found, why = true, run.Error
			if run.State != "unreadable" || run.Error == "" {
				t.Errorf("the cut run: state %q, error %q; want unreadable, with why", run.State, run.Error)
			}
		}
	}
	if !found {
		t.Errorf("ps -o json does not list the unreadable run %s:\n%s", bad, stdout)
	}
	probed := false
	for _, p := range out.Probed {
		probed = probed || (p.PID == j.Process.Pid && p.Dir == elsewhere)
	}
	if !probed {
		t.Errorf("ps -o json: probed %+v; want pid %d in %s", out.Probed, j.Process.Pid, elsewhere)
	}

	code, stdout, stderr = lockwatch(t, "ps")
	if code != ExitOK {
		t.Fatalf("ps: exit %d\n%s", code, stderr)
	}
	var badRow, elsewhereRow string
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == filepath.Base(bad):
			badRow = line
		case len(f) > 0 && f[0] == elsewhere:
			elsewhereRow = line
		}
	}
	if !strings.Contains(elsewhereRow, "not under the default root") || !strings.HasSuffix(elsewhereRow, " "+strconv.Itoa(j.Process.Pid)) {
		t.Errorf("ps: the row of %s is %q; want \"not under the default root\" and pid %d\n%s", elsewhere, elsewhereRow, j.Process.Pid, stdout)
	}
	// Why, without the run's path (the row names the run), at most
	// maxErrorShown columns.
	shown := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(badRow), filepath.Base(bad)))
	shown = strings.TrimSpace(strings.TrimPrefix(shown, "unreadable"))
	shown = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(shown, "-")), "-"))
	if !strings.HasPrefix(badRow, " "+filepath.Base(bad)+" ") || !strings.Contains(badRow, " unreadable ") ||
		strings.Contains(badRow, bad) || utf8.RuneCountInString(shown) > maxErrorShown || !strings.HasSuffix(shown, cutMark) {
		t.Errorf("ps: the row of the cut run is %q (why %q, %d columns); want it unreadable, why cut to %d columns with a mark, no path\n(why in JSON: %q)",
			badRow, shown, utf8.RuneCountInString(shown), maxErrorShown, why)
	}
}

// TestStacksOfAPid: stacks asks a process's probe for its text dump with
// --text (goroutine ids and states), for its profile without; a member of
// a run whose probe does not answer gets a clear error that points at
// attach; a pid that is nothing is refused.
func TestStacksOfAPid(t *testing.T) {
	dir := runDir(t)
	j, jin, jout := child(t, "joiner", dir, probe.EnvDir+"="+dir)
	expectLine(t, jout, "joined")
	defer jin.Close()
	pid := strconv.Itoa(j.Process.Pid)

	code, stdout, stderr := lockwatch(t, "stacks", "--text", pid)
	if code != ExitOK || !strings.Contains(stdout, "pid "+pid+": ") || !strings.Contains(stdout, "(text)") || !strings.Contains(stdout, "\nids: ") {
		t.Errorf("stacks --text %s: exit %d\n%s%s\nwant the text dump: goroutine ids", pid, code, stdout, stderr)
	}
	code, stdout, stderr = lockwatch(t, "stacks", pid)
	if code != ExitOK || !strings.Contains(stdout, "(proto)") || strings.Contains(stdout, "\nids: ") {
		t.Errorf("stacks %s: exit %d\n%s%s\nwant the profile: no goroutine ids", pid, code, stdout, stderr)
	}

	member := rootRun(t)
	b, _, bout := child(t, "ba", member) // joins without a probe
	expectLine(t, bout, "locked")
	bpid := strconv.Itoa(b.Process.Pid)
	code, _, stderr = lockwatch(t, "stacks", bpid)
	if code != ExitUsage || !strings.Contains(stderr, "pid "+bpid+"'s probe did not answer") ||
		!strings.Contains(stderr, "'lockwatch attach "+bpid+"' still reports from the registry") {
		t.Errorf("stacks of a member without a probe: exit %d, %q; want %d and a pointer at attach", code, stderr, ExitUsage)
	}

	code, _, stderr = lockwatch(t, "stacks", "4194304")
	if code != ExitUsage || !strings.Contains(stderr, "no process has pid 4194304") {
		t.Errorf("stacks of no pid: exit %d, %q; want %d, \"no process has pid 4194304\"", code, stderr, ExitUsage)
	}
}
