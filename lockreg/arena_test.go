package lockreg

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/forge"
	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// newArena makes a run with one lock and returns the run directory and its
// arena's bytes.
func newArena(t testing.TB) (dir string, b []byte) {
	dir = filepath.Join(t.TempDir(), "run")
	r, err := Open(dir, Options{MaxProcs: 4, MaxLocks: 4, MaxWaiters: 4, MaxEvents: 8, MaxEdges: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Mutex("a"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, err = os.ReadFile(filepath.Join(dir, arena.ArenaFile))
	if err != nil {
		t.Fatal(err)
	}
	return dir, b
}

func TestBadArenas(t *testing.T) {
	_, good := newArena(t)
	junk := make([]byte, len(good))
	_, _ = rand.Read(junk)
	otherVersion := bytes.Clone(good)
	binary.NativeEndian.PutUint32(otherVersion[8:], 99)
	version3 := bytes.Clone(good) // main's format before the per-lock rings: its header is version 3
	binary.NativeEndian.PutUint32(version3[8:], 3)
	version4 := forge.ArenaV4() // an arena written by lockreg before fencing tokens
	badTable := bytes.Clone(good)
	binary.NativeEndian.PutUint32(badTable[40:], 1<<30) // maxLocks
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the path to read
		want    error
		wantMsg string
	}{
		{"missing dir", func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") }, arena.ErrNotRun, "no such directory"},
		{"not a run", func(t *testing.T, dir string) string { return dir }, arena.ErrNotRun, "no arena file"},
		{"truncated", writeArena(good[:len(good)/2]), arena.ErrCorrupt, "truncated"},
		{"shorter than a header", writeArena(good[:100]), arena.ErrCorrupt, "shorter than a header"},
		{"random bytes", writeArena(junk), arena.ErrCorrupt, "bad magic"},
		{"newer version", writeArena(otherVersion), arena.ErrVersion, "format version 99, written by a newer lockreg; this build reads and writes version 5 only"},
		{"older version", writeArena(version3), arena.ErrVersion, "format version 3, written by an older lockreg; this build reads and writes version 5 only"},
		{"version 4 arena", writeArena(version4), arena.ErrVersion, "format version 4, written by an older lockreg; this build reads and writes version 5 only"},
		{"bad section table", writeArena(badTable), arena.ErrCorrupt, "impossible capacities"},
		{"dir symlink", func(t *testing.T, dir string) string {
			writeArena(good)(t, dir)
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, arena.ErrSymlink, "symbolic link"},
		{"arena symlink", func(t *testing.T, dir string) string {
			real := filepath.Join(t.TempDir(), "arena")
			if err := os.WriteFile(real, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, filepath.Join(dir, arena.ArenaFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, arena.ErrSymlink, "symbolic link"},
		{"arena is a FIFO", func(t *testing.T, dir string) string {
			if err := syscall.Mkfifo(filepath.Join(dir, arena.ArenaFile), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, arena.ErrNotRun, "not a regular file"},
		{"open to others", func(t *testing.T, dir string) string {
			writeArena(good)(t, dir)
			if err := os.Chmod(filepath.Join(dir, arena.ArenaFile), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, arena.ErrOwner, "open to other users"},
		{"dir open to others", func(t *testing.T, dir string) string {
			writeArena(good)(t, dir)
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}, arena.ErrOwner, "chmod 0700"},
		{"other owner", func(t *testing.T, dir string) string {
			if os.Getuid() != 0 {
				t.Skip("changing a file's owner needs root")
			}
			writeArena(good)(t, dir)
			if err := os.Chown(filepath.Join(dir, arena.ArenaFile), 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return dir
		}, arena.ErrOwner, "owned by uid 4242"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := tt.setup(t, dir)
			_, err := arena.ReadSnapshot(path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadSnapshot: got %v; want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got message %q; want it to mention %q", err, tt.wantMsg)
			}
			var ae *arena.ArenaError
			if errors.As(err, &ae) && ae.Hint == "" {
				t.Errorf("error %q says nothing of what to do", err)
			}
			// Joining the run must refuse it the same way, and never
			// replace what is there.
			if tt.want != arena.ErrNotRun {
				if _, err := Open(path, Options{}); !errors.Is(err, tt.want) {
					t.Errorf("Open: got %v; want %v", err, tt.want)
				}
			}
		})
	}
}

func writeArena(b []byte) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		if err := os.WriteFile(filepath.Join(dir, arena.ArenaFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
}

// FuzzSnapshot feeds arbitrary arena files to the reader: it must return a
// snapshot or an error, never panic, hang or read outside the file.
func FuzzSnapshot(f *testing.F) {
	_, good := newArena(f)
	f.Add(good)
	f.Add(good[:arena.HeaderSize])
	f.Add([]byte(arena.Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, arena.ArenaFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := arena.ReadSnapshot(dir)
		if err == nil && s == nil {
			t.Fatal("nil snapshot without an error")
		}
	})
}

func TestEventRingKeepsTheLastEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	// 4 locks, 32 event slots: 8 a lock, 4 of them for holder events.
	r := openT(t, dir, Options{MaxLocks: 4, MaxEvents: 32})
	m, _ := r.Mutex("a")
	other, _ := r.Mutex("b")
	for i := 0; i < 10; i++ {
		if err := m.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = m.Unlock()
	}
	// Another lock's events take nothing from a's ring.
	for i := 0; i < 10; i++ {
		if err := other.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = other.Unlock()
	}
	s, _ := arena.ReadSnapshot(dir)
	if s.EventsTotal != 40 || len(s.Events) != 8 {
		t.Fatalf("got %d events kept of %d; want the last 4 of each lock's 20 (%s)", len(s.Events), s.EventsTotal, eventKinds(s))
	}
	var a []arena.Event
	for i, e := range s.Events {
		if e.Seq != uint64(i) {
			t.Errorf("event %d has seq %d; want its place", i, e.Seq)
		}
		if e.LockName == "a" {
			a = append(a, e)
		}
	}
	if len(a) != 4 {
		t.Fatalf("got %d events of a; want 4", len(a))
	}
	for i, e := range a {
		want := arena.EventAcquire
		if i%2 == 1 {
			want = arena.EventRelease
		}
		if e.Kind != want || e.PID != os.Getpid() || e.Goroutine != curGoid() {
			t.Errorf("event %d of a = %+v; want %v by this goroutine", i, e, want)
		}
	}
}

// TestFramePointerWalkMatchesCallers checks that lockreg's capture starts
// at the same frame either way record.Stack captures (the unwinders
// themselves are compared in internal/rt/record).
func TestFramePointerWalkMatchesCallers(t *testing.T) {
	if !record.SetFramePointers(true) {
		defer record.SetFramePointers(false)
	}
	if !record.FramePointers() {
		t.Skip("no frame-pointer unwinder on " + runtime.GOARCH)
	}
	var fp, rc stackPCs
	deep(12, func() {
		record.SetFramePointers(true)
		fp.capture()
		record.SetFramePointers(false)
		rc.capture()
	})
	record.SetFramePointers(true)
	// The walk also sees the compiler's go-statement wrappers, which
	// runtime.Callers elides; symbolized stacks drop them (cleanFrames).
	a := cleanFrames(record.FramesOf(fp.Frames()))
	b := cleanFrames(record.FramesOf(rc.Frames()))
	if len(a) != len(b) || len(a) < 12 {
		t.Fatalf("frame-pointer walk found %d frames, runtime.Callers %d; want equal, at least 12", len(a), len(b))
	}
	// The closure plays Lock: the stack starts at its caller.
	if !strings.HasSuffix(a[0].Func, "lockreg.deep") {
		t.Errorf("first frame %v; want the caller of the function that called capture", a[0])
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("frame %d: fp %v, runtime.Callers %v", i, a[i], b[i])
		}
	}
}

//go:noinline
func deep(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	deep(n-1, f)
}

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/fuzz")

// TestFuzzSeeds writes (with -update) the FuzzSnapshot seed corpus: a real
// arena, its header alone, and damaged variants; and checks that each seed
// on disk still reads as it should.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzSnapshot")
	want := map[string]error{"good": nil, "header-only": arena.ErrCorrupt, "magic-only": arena.ErrCorrupt,
		"other-version": arena.ErrVersion, "half": arena.ErrCorrupt}
	if *updateSeeds {
		_, good := newArena(t)
		otherVersion := bytes.Clone(good)
		binary.NativeEndian.PutUint32(otherVersion[8:], arena.FormatVersion+1)
		seeds := map[string][]byte{"good": good, "header-only": good[:arena.HeaderSize], "magic-only": []byte(arena.Magic),
			"other-version": otherVersion, "half": good[:len(good)/2]}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, wantErr := range want {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("seed %s: %v (regenerate: go test -run TestFuzzSeeds -update)", name, err)
		}
		lit := strings.TrimSuffix(strings.TrimPrefix(string(raw), "go test fuzz v1\n[]byte("), ")\n")
		b, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("seed %s: not a []byte corpus entry: %v", name, err)
		}
		run := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(run, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, arena.ArenaFile), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := arena.ReadSnapshot(run); !errors.Is(err, wantErr) && !(wantErr == nil && err == nil) {
			t.Errorf("seed %s reads with %v; want %v", name, err, wantErr)
		}
	}
}
