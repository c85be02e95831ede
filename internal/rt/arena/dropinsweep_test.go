package arena

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestSweepDropinFiles: of the drop-in arena files, those of a process gone
// that nothing names go; a live process's, a named pid's and other files
// stay.
func TestSweepDropinFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	rd, err := OpenDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	dead := func() int {
		c := exec.Command("true")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		return c.Process.Pid // reaped: no process has it (until reused)
	}
	gonePID, namedPID := dead(), dead()
	live := os.Getpid()
	files := map[string]bool{ // name: stays
		"dropin-" + strconv.Itoa(gonePID) + ".arena":  false,
		"dropin-" + strconv.Itoa(namedPID) + ".arena": true,
		"dropin-" + strconv.Itoa(live) + ".arena":     true,
		"notes.txt": true,
	}
	for name := range files {
		if err := rd.WriteFile(name, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	names, err := rd.names()
	if err != nil {
		t.Fatal(err)
	}
	if n := sweepDropinFiles(rd, names, func() map[int]bool { return map[int]bool{namedPID: true} }); n != 1 {
		t.Errorf("removed %d files; want 1", n)
	}
	left, err := rd.names()
	if err != nil {
		t.Fatal(err)
	}
	for name, stays := range files {
		if slices.Contains(left, name) != stays {
			t.Errorf("%s: left %v; want %v (left: %q)", name, !stays, stays, left)
		}
	}
	if len(left) != 3 {
		t.Errorf("left %q; want three files (nothing set aside)", left)
	}
}
