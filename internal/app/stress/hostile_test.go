//go:build stress

package stress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/forge"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
)

// hostileArenas is how many corrupted runs the generator makes.
const hostileArenas = 120

// commandLimit bounds one lockwatch command on a corrupted run: far above
// what any takes (a hang is what it catches).
const commandLimit = 60 * time.Second

// A mutation damages a copy of a good run directory; seed makes it
// reproducible.
type mutation struct {
	name string
	do   func(dir string, rng *rand.Rand, size int64) error
}

func patchArena(dir string, f func(a *forge.Arena) error) error {
	a, err := forge.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f(a), a.Close())
}

// randomBytes writes n random bytes at random offsets in [from, to).
func randomBytes(from, to int64, n int) func(string, *rand.Rand, int64) error {
	return func(dir string, rng *rand.Rand, size int64) error {
		to := min(to, size)
		return patchArena(dir, func(a *forge.Arena) error {
			for range n {
				off := from + rng.Int64N(max(to-from, 1))
				if err := a.WriteAt([]byte{byte(rng.UintN(256))}, off); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

func field32(off int64, v func(*rand.Rand) uint32) func(string, *rand.Rand, int64) error {
	return func(dir string, rng *rand.Rand, _ int64) error {
		return patchArena(dir, func(a *forge.Arena) error {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], v(rng))
			return a.WriteAt(b[:], off)
		})
	}
}

var mutations = []mutation{
	{"header bytes", randomBytes(0, 4096, 8)},
	{"process table bytes", randomBytes(4096, 69632, 64)},
	{"lock table bytes", randomBytes(69632, 593920, 256)},
	{"waiter table bytes", randomBytes(593920, 856064, 256)},
	{"event ring bytes", randomBytes(856064, 1<<30, 1024)},
	{"everything", randomBytes(0, 1<<30, 4096)},
	{"process capacity", field32(24, func(r *rand.Rand) uint32 { return r.Uint32() })},
	{"lock capacity", field32(40, func(r *rand.Rand) uint32 { return r.Uint32() })},
	{"event capacity", field32(72, func(r *rand.Rand) uint32 { return uint32(1) << r.UintN(32) })},
	{"locks in use", field32(108, func(r *rand.Rand) uint32 { return r.Uint32() })},
	{"record size", field32(28, func(r *rand.Rand) uint32 { return uint32(r.UintN(1 << 16)) })},
	{"truncated", func(dir string, rng *rand.Rand, size int64) error {
		return os.Truncate(filepath.Join(dir, arena.ArenaFile), rng.Int64N(size))
	}},
	{"extended", func(dir string, rng *rand.Rand, size int64) error {
		return os.Truncate(filepath.Join(dir, arena.ArenaFile), size+1+rng.Int64N(1<<20))
	}},
	{"zeroed", func(dir string, _ *rand.Rand, size int64) error {
		return os.WriteFile(filepath.Join(dir, arena.ArenaFile), make([]byte, size), 0o600)
	}},
	{"names", func(dir string, rng *rand.Rand, _ int64) error {
		// Lock names of any length byte and any bytes, state 1.
		return patchArena(dir, func(a *forge.Arena) error {
			for i := range 8 {
				rec := make([]byte, 128)
				for j := range rec {
					rec[j] = byte(rng.UintN(256))
				}
				binary.NativeEndian.PutUint32(rec[4:], 1)
				if err := a.WriteAt(rec[4:], 69632+int64(i)*128+4); err != nil {
					return err
				}
			}
			return nil
		})
	}},
	{"info files", func(dir string, rng *rand.Rand, _ int64) error {
		return garbleFiles(dir, ".json", rng)
	}},
	{"stack dictionaries", func(dir string, rng *rand.Rand, _ int64) error {
		return garbleFiles(dir, ".stacks", rng)
	}},
}

// garbleFiles replaces the run's files ending in ext with random bytes and
// random JSON-looking lines.
func garbleFiles(dir, ext string, rng *rand.Rand) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ext) {
			continue
		}
		var b bytes.Buffer
		for range 1 + rng.IntN(50) {
			switch rng.IntN(3) {
			case 0:
				fmt.Fprintf(&b, `{"id":"%x","frames":[{"func":"%s","file":"x.go","line":%d}]}`+"\n", rng.Uint64(), strings.Repeat("\x1b[2J", rng.IntN(4)), rng.Int())
			case 1:
				fmt.Fprintf(&b, `{"pid":%d,"role":"%s","args":[1,2]}`+"\n", rng.Int(), "\x9b\xff")
			default:
				junk := make([]byte, rng.IntN(4096))
				for i := range junk {
					junk[i] = byte(rng.UintN(256))
				}
				b.Write(junk)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b.Bytes(), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// goodRun makes a run with something in every table: this process, a lock
// held, events; under root.
func goodRun(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "run-good")
	r, err := lockreg.Open(dir, lockreg.Options{Role: "good"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 4 {
		m, err := r.Mutex(fmt.Sprintf("good.%d", i))
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			m.Lock(ctx)
			m.Unlock()
		}
		if i == 0 {
			m.Lock(ctx) // held when this process leaves
		}
	}
	r.Close()
	return dir
}

// copyDir copies the files of a run directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// hostileResult is one lockwatch command on a corrupted run.
type hostileResult struct {
	code   int
	stderr string
	took   time.Duration
}

func runLockwatch(t *testing.T, lw string, args ...string) hostileResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, lw, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	err := cmd.Run()
	res := hostileResult{stderr: stderr.String(), took: time.Since(began)}
	var xe *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("lockwatch %s: no answer within %v (a hang)", strings.Join(args, " "), commandLimit)
		res.code = -1
	case errors.As(err, &xe):
		res.code = xe.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return res
}

// judge fails unless the command ended as lockwatch ends: exit 0 or 3 with
// a report, or exit 2 with one line that says what is wrong; never a panic.
func judge(t *testing.T, what string, r hostileResult) {
	t.Helper()
	switch {
	case strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine "):
		t.Errorf("%s: panicked (exit %d):\n%s", what, r.code, r.stderr)
	case r.code == 2:
		if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "lockwatch: ") {
			t.Errorf("%s: exit 2 with stderr %q; want one line starting \"lockwatch: \"", what, r.stderr)
		}
	case r.code != 0 && r.code != 3:
		t.Errorf("%s: exit %d, stderr %q", what, r.code, r.stderr)
	}
}

// TestHostileArenas feeds corrupted copies of a good run to lockwatch attach
// (table and JSON) and to one lockwatch ps over all of them.
func TestHostileArenas(t *testing.T) {
	lw := lockwatchBin(t)
	root := os.Getenv(arena.EnvRoot) // TestMain's temporary root: ps reads it
	good := goodRun(t, root)
	fi, err := os.Stat(filepath.Join(good, arena.ArenaFile))
	if err != nil {
		t.Fatal(err)
	}
	errorsSeen, reports := 0, 0
	var slowest time.Duration
	for i := range hostileArenas {
		m := mutations[i%len(mutations)]
		rng := rand.New(rand.NewPCG(uint64(i), 8))
		dir := filepath.Join(root, fmt.Sprintf("run-hostile-%03d", i))
		copyDir(t, good, dir)
		if err := m.do(dir, rng, fi.Size()); err != nil {
			t.Fatalf("%s (seed %d): %v", m.name, i, err)
		}
		for _, args := range [][]string{{"attach", dir}, {"attach", "-o", "json", dir}} {
			r := runLockwatch(t, lw, args...)
			judge(t, fmt.Sprintf("%s (seed %d): lockwatch %s", m.name, i, strings.Join(args[:len(args)-1], " ")), r)
			slowest = max(slowest, r.took)
			if r.code == 2 {
				errorsSeen++
			} else {
				reports++
			}
		}
	}
	r := runLockwatch(t, lw, "ps", "--all")
	judge(t, "lockwatch ps --all", r)
	verdict := "no panic, no hang, every error one clear line"
	if t.Failed() {
		verdict = "FAILED (above)"
	}
	t.Logf("hostile arenas: %d corrupted runs (%d kinds), %d attaches: %d clear errors, %d reports; %s; slowest attach %v; ps --all over all of them %v (exit %d)",
		hostileArenas, len(mutations), 2*hostileArenas, errorsSeen, reports, verdict, slowest.Round(time.Millisecond), r.took.Round(time.Millisecond), r.code)
}
