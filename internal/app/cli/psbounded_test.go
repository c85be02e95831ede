package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// programBin returns a builder of the program in testdata/name, built
// once per test binary into the binaries' directory (removed by TestMain),
// without cgo whatever GOFLAGS says: no race detector (which allows a few
// thousand goroutines at most), and a program Go's runtime may end for a
// deadlock (it never ends a cgo one).
func programBin(name string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := binaries()
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", bin, "./testdata/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
}

// goroutinesBin builds testdata/goroutines.
var goroutinesBin = programBin("goroutines")

// TestPsBoundedByGoroutines: lockwatch ps reads every Go process of the
// user; with one of 100,000 goroutines (50,000 blocked on a sync.Mutex)
// among them, it counts them all and stays within the bound it keeps for
// any input. (Reading each process whole made its peak follow the largest
// process: 94 MiB with this one, where counting takes 30.)
func TestPsBoundedByGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := lockwatchBin(t)
	target, err := goroutinesBin()
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	cmd := exec.Command(target, "-n", strconv.Itoa(n))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("target said %q (%v); want ready", line, err)
	}
	env := []string{arena.EnvRoot + "=" + privateRoot(t)}
	// The goroutines block as they get to run: ps is run until it sees
	// them all blocked, and each of its runs is measured.
	var peak int64
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		m := measure(t, bin, env, "ps", "-o", "json")
		if m.code != ExitOK {
			t.Fatalf("ps: exit %d: %s", m.code, m.stderr)
		}
		peak = max(peak, m.maxRSS)
		var o psOutput
		if err := json.Unmarshal([]byte(m.stdout), &o); err != nil {
			t.Fatal(err)
		}
		var g psGo
		for _, p := range o.Go {
			if p.PID == cmd.Process.Pid {
				g = p
			}
		}
		if g.Goroutines == n+1 && g.LockWaiters == n/2 {
			t.Logf("ps: %.1f MiB at most, cpu %v, wall %v", float64(peak)/(1<<20), m.cpu, m.wall)
			break
		}
		if g.Error != "" || time.Now().After(deadline) {
			t.Fatalf("ps: the target's row %+v; want %d goroutines, %d waiting on locks", g, n+1, n/2)
		}
		time.Sleep(quiescent)
	}
	if peak > smallRSS {
		t.Errorf("lockwatch ps took %d MiB beside a process of %d goroutines; want at most %d MiB", peak>>20, n, smallRSS>>20)
	}
}
