package forge

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/procid"
)

// newRun makes a closed run with one lock (index 0) and a process table of
// maxProcs slots, one of them taken by this process's closed entry.
func newRun(t *testing.T, maxProcs int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	r, err := lockreg.Open(dir, lockreg.Options{MaxProcs: maxProcs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Mutex("forged.lock"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sleeper is a live process outside any run.
func sleeper(t *testing.T) procid.ID {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.Identity()
}

// What forge writes, lockreg reads back as a member would have written it:
// the offsets forge uses are those of the arena the current lockreg makes.
// A forged process entry is read with its identity and state; a forged
// holder makes the lock held by that process, with a holder record naming
// it.
func TestForgedRecordsReadBack(t *testing.T) {
	dir := newRun(t, 4)
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fi, err := os.Stat(filepath.Join(dir, arena.ArenaFile))
	if err != nil {
		t.Fatal(err)
	}
	if a.Size() != fi.Size() {
		t.Errorf("Size: got %d; want the arena file's %d", a.Size(), fi.Size())
	}

	victim := sleeper(t)
	slot, err := a.AddProcess(victim, Running)
	if err != nil {
		t.Fatal(err)
	}
	state := func() arena.ProcState {
		t.Helper()
		procs, err := arena.ReadProcesses(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			if p.Identity() == victim {
				if p.Slot != slot {
					t.Errorf("forged entry read in slot %d; AddProcess said %d", p.Slot, slot)
				}
				return p.State
			}
		}
		t.Fatalf("the forged entry %v is not in the process table: %+v", victim, procs)
		return ""
	}
	if got := state(); got != arena.ProcRunning {
		t.Errorf("forged running entry read as %q", got)
	}
	if err := a.SetHolder(0, victim, slot); err != nil {
		t.Fatal(err)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Locks) != 1 {
		t.Fatalf("got %d locks; want the one lock", len(s.Locks))
	}
	l := s.Locks[0]
	if l.Name != "forged.lock" || l.HolderPID != victim.PID || l.Holder == nil || l.Holder.Identity() != victim {
		t.Errorf("forged holder read as %+v (record %+v); want %q held by %v", l, l.Holder, "forged.lock", victim)
	}
	if err := a.SetProcess(slot, victim, Exited); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != arena.ProcExited {
		t.Errorf("forged exited entry read as %q", got)
	}
}

// forge refuses what it cannot write: slots and locks out of range, a
// full process table, a file that is not an arena or of a format it does
// not know.
func TestForgeRefuses(t *testing.T) {
	dir := newRun(t, 2) // one slot is this process's closed entry
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := procid.ID{PID: 1 << 22, Start: 1}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"process slot -1", a.SetProcess(-1, id, Running), "process slot -1 out of range"},
		{"process slot 2", a.SetProcess(2, id, Running), "process slot 2 out of range"},
		{"lock -1", a.SetHolder(-1, id, 0), "lock -1 out of range"},
	} {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: got %v; want %q", tt.name, tt.err, tt.want)
		}
	}
	if _, err := a.AddProcess(id, Running); err != nil {
		t.Fatalf("the last free slot: %v", err)
	}
	if slot, err := a.AddProcess(procid.ID{PID: 1<<22 + 1, Start: 1}, Running); err == nil || !strings.Contains(err.Error(), "process table is full") {
		t.Errorf("AddProcess on a full table: got slot %d, %v; want \"the process table is full\"", slot, err)
	}
	// The format version (offset 8) of one forge does not know.
	if err := a.WriteAt([]byte{9, 0, 0, 0}, 8); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "format version 9") {
		t.Errorf("Open of format 9: got %v; want a refusal naming the version", err)
	}

	if _, err := Open(t.TempDir()); !os.IsNotExist(err) {
		t.Errorf("Open of a directory without an arena: got %v; want not-exist", err)
	}
	for name, content := range map[string]string{"short": "LOCKW", "not an arena": strings.Repeat("x", 128)} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, arena.ArenaFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(d); err == nil {
			t.Errorf("Open of %s: got no error", name)
		}
	}
}
