package filelocksrc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
)

// sleeper starts a real process that lives until the test ends.
func sleeper(t *testing.T) int {
	t.Helper()
	return start(t, exec.Command("sleep", "60"))
}

// goneProcess returns the pid of a process that has exited and been reaped.
func goneProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// cycleTable is a lock table in which a and b wait for each other's POSIX
// lock.
func cycleTable(a, b int) []byte {
	return fmt.Appendf(nil, "1: POSIX  ADVISORY  WRITE %d fe:00:1 0 EOF\n1: -> POSIX  ADVISORY  WRITE %d fe:00:1 0 EOF\n"+
		"2: POSIX  ADVISORY  WRITE %d fe:00:2 0 EOF\n2: -> POSIX  ADVISORY  WRITE %d fe:00:2 0 EOF\n", a, b, b, a)
}

func diagnose(t *testing.T, s *Source) *report.Report {
	t.Helper()
	r, err := report.Diagnose(t.Context(), report.Sources{Locks: []lockstate.Source{s}, Host: liveness.System{}}, report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A table that shows a cycle in one read only (it changed while read, or
// the cycle resolved itself) gives no finding; the same table read twice
// gives the cycle (so that the first half can fail).
func TestChangingTable(t *testing.T) {
	a, b := sleeper(t), sleeper(t)
	table := cycleTable(a, b)
	steady := &Source{read: func() ([]byte, error) { return table, nil }}
	if r := diagnose(t, steady); !r.Has(report.Cycle) {
		t.Fatalf("a steady cycle of pids %d and %d: findings %+v; want a cycle", a, b, r.Findings)
	}
	reads := 0
	once := &Source{read: func() ([]byte, error) {
		reads++
		if reads == 1 {
			return table, nil
		}
		return nil, nil
	}}
	if r := diagnose(t, once); len(r.Findings) != 0 {
		t.Errorf("a cycle seen in one read of %d: findings %+v; want none", reads, r.Findings)
	}
}

// Holders and waiters that exited before their process was read are left
// out, with a note: never a dead holder (a file lock dies with its holder).
func TestGoneBetweenReads(t *testing.T) {
	live, gone := sleeper(t), goneProcess(t)
	s := &Source{read: func() ([]byte, error) { return cycleTable(live, gone), nil }}
	snap, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range snap.Locks {
		for _, h := range l.Holders {
			if h.PID == gone {
				t.Errorf("lock %q held by pid %d, which had exited", l.Name, gone)
			}
		}
		for _, w := range l.Waiters {
			if w.PID == gone {
				t.Errorf("lock %q awaited by pid %d, which had exited", l.Name, gone)
			}
		}
	}
	if !strings.Contains(strings.Join(snap.Notes, "\n"), "had exited by the time their process was read") {
		t.Errorf("notes %q; want one about the processes that exited", snap.Notes)
	}
	if r := diagnose(t, s); len(r.Findings) != 0 {
		t.Errorf("findings %+v; want none", r.Findings)
	}
}

func TestBadTable(t *testing.T) {
	_, err := (&Source{Locks: filepath.Join(t.TempDir(), "locks")}).Read(t.Context())
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Errorf("a missing table: %v; want an *fs.PathError for a file that does not exist", err)
	}
	big := filepath.Join(t.TempDir(), "locks")
	if err := os.WriteFile(big, []byte(strings.Repeat("1: FLOCK  ADVISORY  WRITE 1 fe:00:1 0 EOF\n", 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Source{Locks: big, MaxBytes: 100}).Read(t.Context()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a table over MaxBytes: %v; want ErrTooLarge", err)
	}
	live := sleeper(t)
	garbage := fmt.Appendf(nil, "\x1b[2J\x00garbage\n1: POSIX  ADVISORY  WRITE %d fe:00:1 0 EOF\n1: -> POSIX  ADVISORY  WRITE nope fe:00:1 0 EOF\n", live)
	s := &Source{read: func() ([]byte, error) { return garbage, nil }}
	snap, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Locks) != 1 || len(snap.Locks[0].Holders) != 1 || snap.Locks[0].Holders[0].PID != live || len(snap.Locks[0].Waiters) != 0 {
		t.Errorf("locks %+v; want pid %d's lock, with no waiter", snap.Locks, live)
	}
	if notes := strings.Join(snap.Notes, "\n"); !strings.Contains(notes, "2 lines of") || !strings.Contains(notes, "could not be read") {
		t.Errorf("notes %q; want one about the 2 unreadable lines", notes)
	}
}

// The type fact names the kind and the type as /proc/locks does.
func TestTypeName(t *testing.T) {
	for _, k := range []string{KindFlock, KindPOSIX, KindOFD} {
		for _, typ := range []string{"READ", "WRITE"} {
			if got, want := typeName(k, typ), strings.ToUpper(k)+" "+typ; got != want {
				t.Errorf("typeName(%s, %s) = %q; want %q", k, typ, got, want)
			}
		}
	}
}
