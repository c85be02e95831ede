package cli

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testchild"
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
	pid := startGoroutines(t, target, n)
	env := []string{arena.EnvRoot + "=" + privateRoot(t)}
	// The goroutines block as they get to run: ps is run until it sees
	// them all blocked, and each of its runs is measured.
	var peak int64
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		g, m := psRow(t, bin, env, pid)
		peak = max(peak, m.maxRSS)
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

// TestPsBoundedByBinary: a Go process whose binary says its .gopclntab is
// 160 MiB long (a copy of testdata/goroutines with that section's header
// changed, the file extended to hold it, sparsely: it runs as before, the
// kernel loads segments, not sections) is listed by lockwatch ps with a
// line saying its .gopclntab is too large for a quick look, and ps stays within
// its bound (reading them took it past 160 MiB).
func TestPsBoundedByBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := lockwatchBin(t)
	src, err := goroutinesBin()
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "inflated")
	inflate(t, src, target, ".gopclntab", 160<<20)
	pid := startGoroutines(t, target, 10)
	g, m := psRow(t, bin, []string{arena.EnvRoot + "=" + privateRoot(t)}, pid)
	if !strings.Contains(g.Error, "its .gopclntab is 160 MiB, more than a quick look reads") {
		t.Errorf("ps: the target's row %+v; want an error saying its .gopclntab is too large", g)
	}
	if m.maxRSS > smallRSS {
		t.Errorf("lockwatch ps took %d MiB beside a binary of large tables; want at most %d MiB", m.maxRSS>>20, smallRSS>>20)
	}
}

// startGoroutines starts the goroutines program exe with n goroutines and
// returns its pid once it says it is ready; it ends with the test.
func startGoroutines(t *testing.T, exe string, n int) int {
	t.Helper()
	cmd := exec.Command(exe, "-n", strconv.Itoa(n))
	testchild.StartReady(t, cmd)
	return cmd.Process.Pid
}

// psRow runs lockwatch ps -o json (bin, with env) in a process of its own,
// and returns its row of the Go process pid (zero if none) and what it
// took.
func psRow(t *testing.T, bin string, env []string, pid int) (psGo, measured) {
	t.Helper()
	m := measure(t, bin, env, "ps", "-o", "json")
	if m.code != ExitOK {
		t.Fatalf("ps: exit %d: %s", m.code, m.stderr)
	}
	var o psOutput
	if err := json.Unmarshal([]byte(m.stdout), &o); err != nil {
		t.Fatal(err)
	}
	for _, g := range o.Go {
		if g.PID == pid {
			return g, m
		}
	}
	return psGo{}, m
}

// inflate copies the ELF executable src to dst, whose header of section
// name then says it is size bytes long; the file is extended, sparsely, to
// hold it.
func inflate(t *testing.T, src, dst, name string, size uint64) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	shoff, shentsize := le.Uint64(data[0x28:]), uint64(le.Uint16(data[0x3a:]))
	i := slices.IndexFunc(f.Sections, func(s *elf.Section) bool { return s.Name == name })
	if i < 0 || f.Class != elf.ELFCLASS64 || shentsize != 64 {
		t.Fatalf("%s: no %s section header to change", src, name)
	}
	le.PutUint64(data[shoff+uint64(i)*shentsize+32:], size) // Elf64_Shdr.sh_size
	if err := os.WriteFile(dst, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if end := int64(f.Sections[i].Offset + size); end > int64(len(data)) {
		if err := os.Truncate(dst, end); err != nil {
			t.Fatal(err)
		}
	}
}
