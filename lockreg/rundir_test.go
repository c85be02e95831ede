package lockreg

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// otherUID is a uid that is not ours, for directories "another user" made.
const otherUID = 4242

// TestSquattedRootFallsBack makes the default root every way another user
// (or an accident) can spoil it, and checks that a private fallback is used,
// said in one line, reused by the next caller, and listed by Roots, while
// the spoilt root never is.
func TestSquattedRootFallsBack(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, root string)
		want  string // in Root.Fallback
	}{
		{"other owner", func(t *testing.T, root string) {
			if os.Getuid() != 0 {
				t.Skip("chown to another uid needs root")
			}
			mkdir(t, root, 0o700)
			if err := os.Chown(root, otherUID, otherUID); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 4242"},
		{"world writable", func(t *testing.T, root string) { mkdir(t, root, 0o777) }, "open to other users"},
		{"group writable", func(t *testing.T, root string) { mkdir(t, root, 0o770) }, "open to other users"},
		{"regular file", func(t *testing.T, root string) {
			if err := os.WriteFile(root, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"symlink", func(t *testing.T, root string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			mkdir(t, target, 0o700)
			if err := os.Symlink(target, root); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"fifo", func(t *testing.T, root string) {
			if err := syscall.Mkfifo(root, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			def := filepath.Join(base, arena.RootName())
			tt.spoil(t, def)
			// A fallback-looking directory of another user is never used.
			if os.Getuid() == 0 {
				evil := filepath.Join(base, arena.RootName()+"-0evil")
				mkdir(t, evil, 0o700)
				if err := os.Chown(evil, otherUID, otherUID); err != nil {
					t.Fatal(err)
				}
			}
			r, err := arena.DefaultRootIn([]string{base})
			if err != nil {
				t.Fatalf("defaultRoot: got error %v; want a fallback", err)
			}
			if r.Dir == def || !strings.HasPrefix(filepath.Base(r.Dir), arena.RootName()+"-") || !arena.IsPrivateDir(r.Dir) {
				t.Errorf("got root %q; want a private %s-* in %s", r.Dir, arena.RootName(), base)
			}
			if !strings.Contains(r.Fallback, tt.want) || !strings.Contains(r.Fallback, r.Dir) || strings.Contains(r.Fallback, "\n") {
				t.Errorf("got Fallback %q; want one line saying %q and naming %s", r.Fallback, tt.want, r.Dir)
			}
			again, err := arena.DefaultRootIn([]string{base})
			if err != nil || again.Dir != r.Dir {
				t.Errorf("second defaultRoot: got %q, %v; want the same fallback %q", again.Dir, err, r.Dir)
			}
			run, err := arena.NewRunDir(r.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if roots := arena.RootsIn([]string{base}); len(roots) != 1 || roots[0] != r.Dir {
				t.Errorf("rootsIn: got %q; want only the fallback %q", roots, r.Dir)
			}
			if _, err := Open(run, Options{}); err != nil {
				t.Errorf("Open in the fallback: %v", err)
			}
		})
	}
}

// TestDefaultRootUsedWhenPrivate: the default root of this user is used as
// it is, with no fallback.
func TestDefaultRootUsedWhenPrivate(t *testing.T) {
	base := t.TempDir()
	r, err := arena.DefaultRootIn([]string{base})
	if err != nil || r.Dir != filepath.Join(base, arena.RootName()) || r.Fallback != "" {
		t.Fatalf("got %+v, %v; want the default root, no fallback", r, err)
	}
	if roots := arena.RootsIn([]string{base}); len(roots) != 1 || roots[0] != r.Dir {
		t.Errorf("rootsIn: got %q; want %q", roots, r.Dir)
	}
}

// TestEnvRoot: $LOCKWATCH_ROOT is the only root, and is never replaced.
func TestEnvRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	t.Setenv(arena.EnvRoot, root)
	r, err := arena.DefaultRoot()
	if err != nil || r.Dir != root || r.Fallback != "" {
		t.Fatalf("got %+v, %v; want %s", r, err, root)
	}
	if got := arena.Roots(); len(got) != 1 || got[0] != root {
		t.Errorf("Roots: got %q; want only %s", got, root)
	}
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := arena.DefaultRoot(); !errors.Is(err, arena.ErrOwner) {
		t.Errorf("an open LOCKWATCH_ROOT: got %v; want ErrOwner", err)
	}
}

// TestSwapAfterOpen: a run directory whose path is swapped for a symbolic
// link once it is open (its parent is writable by others, say) keeps every
// later file in the real directory, and a reader opening the path after the
// swap refuses it.
func TestSwapAfterOpen(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o777); err != nil { // "another user can write here"
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "run")
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	moved, evil := dir+".moved", filepath.Join(t.TempDir(), "evil")
	mkdir(t, evil, 0o700)
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(evil, dir); err != nil {
		t.Fatal(err)
	}
	f, err := r.runDir().CreateFile("dump-after-swap")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(moved, "dump-after-swap")); err != nil {
		t.Errorf("the file is not in the run directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(evil, "dump-after-swap")); err == nil {
		t.Errorf("the file was written through the swapped-in symbolic link")
	}
	if _, err := arena.ReadSnapshot(dir); !errors.Is(err, arena.ErrSymlink) {
		t.Errorf("ReadSnapshot through the symbolic link: got %v; want ErrSymlink", err)
	}
	// A snapshot taken before the swap reads its dictionaries through its
	// own handle: swapping the path does not redirect them.
	mu, _ := r.Mutex("l")
	if err := mu.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer mu.Unlock()
	s, err := arena.ReadSnapshot(moved)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, moved+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(evil, moved); err != nil {
		t.Fatal(err)
	}
	h := s.Locks[0].Holder
	if h == nil {
		t.Fatal("no holder record")
	}
	if _, ok := s.Stack(h.Identity(), h.Stack); !ok {
		t.Errorf("the holder's stack is not read through the snapshot's handle after the swap")
	}
}

// TestRunDirNames: files are one path component of the run directory.
func TestRunDirNames(t *testing.T) {
	rd, err := arena.OpenDir(filepath.Join(t.TempDir(), "run"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, name := range []string{"", ".", "..", "../x", "a/b", "/etc/passwd"} {
		if f, err := rd.CreateFile(name); err == nil {
			f.Close()
			t.Errorf("CreateFile(%q): got nil error; want a refusal", name)
		}
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestRegistrySnapshotKeepsTheHandle: a snapshot of a registry's own run,
// collected, leaves the registry's directory handle open.
func TestRegistrySnapshotKeepsTheHandle(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), "run"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 3 {
		if _, err := r.snapshot(); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
	}
	f, err := r.runDir().CreateFile("after-gc")
	if err != nil {
		t.Fatalf("the run directory's handle after snapshots were collected: %v", err)
	}
	f.Close()
}
