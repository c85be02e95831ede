package dropinsrc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// TestReadArena: a process of the run that changed only its import line
// (no probe, not in the run's table) is read from its arena file in the
// run directory: its held mutex, with the holder's goroutine.
func TestReadArena(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "holder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../diag/dropinmem/testdata/holder").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LOCKWATCH_DIR="+dir)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	var g int64
	var line int
	if _, err := fmt.Fscanf(bufio.NewReader(out), "ready %d %d\n", &g, &line); err != nil {
		t.Fatalf("holder: %v", err)
	}
	src := Source{Dir: dir, Processes: func(string) ([]arena.Process, error) { return nil, nil }}
	snap, err := src.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range snap.Locks {
		for _, h := range l.Holders {
			if h.Party.ID.PID == cmd.Process.Pid && h.Party.Goroutine == g {
				if len(l.Waiters) != 1 {
					t.Errorf("waiters %+v; want one", l.Waiters)
				}
				return
			}
		}
	}
	t.Errorf("no lock held by pid %d goroutine %d in %+v (notes %q)", cmd.Process.Pid, g, snap.Locks, snap.Notes)
}
