package cli

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// setFormat writes version as the format version of the arena in dir (a
// run left by a lockwatch of that format: its header's version field).
func setFormat(t *testing.T, dir string, version uint32) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, arena.ArenaFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], version)
	if _, err := f.WriteAt(b[:], 8); err != nil {
		t.Fatal(err)
	}
}

// TestPruneOtherFormat: a run left in an older arena format (version 4),
// whose process table this lockwatch cannot read, is kept by prune and
// removed by prune --all once no live process uses it: none maps or holds
// open its files, none names it in LOCKWATCH_DIR. One a live process maps
// (a real process of the run, holding a lock in it), or names, is kept,
// even with --all, until that process is gone.
func TestPruneOtherFormat(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o700)
	t.Setenv(arena.EnvRoot, root)
	mk := func() string {
		d, err := arena.NewRunDir(root)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// An old run whose one process joined and left.
	left := func() string {
		d := mk()
		if r, err := lockreg.Open(d, lockreg.Options{}); err != nil {
			t.Fatal(err)
		} else {
			r.Close()
		}
		setFormat(t, d, 4)
		return d
	}
	ended := left()

	mapped := mk()
	c, in, out := child(t, "ba", mapped)
	defer c.Process.Kill()
	expectLine(t, out, "locked")
	setFormat(t, mapped, 4)

	named := left()
	sleeper := exec.Command("sleep", "600")
	sleeper.Env = append(cleanEnv(), probe.EnvDir+"="+named)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()

	// ps says what it is.
	code, stdout, stderr := lockwatch(t, "ps", "--all", "-o", "json")
	if code != ExitOK || strings.Count(stdout, "format version 4") != 3 {
		t.Errorf("ps --all: exit %d; want the runs listed unreadable, naming format version 4\n%s%s", code, stdout, stderr)
	}

	prune := func(args ...string) pruneOutput {
		t.Helper()
		code, stdout, stderr := lockwatch(t, append([]string{"prune", "-o", "json"}, args...)...)
		var out pruneOutput
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != ExitOK {
			t.Fatalf("prune %q: exit %d, %s%s (%v)", args, code, stdout, stderr, err)
		}
		return out
	}
	whys := func(out pruneOutput) (removed, kept map[string]string) {
		removed, kept = map[string]string{}, map[string]string{}
		for _, r := range out.Remove {
			removed[r.Dir] = r.Why
		}
		for _, r := range out.Kept {
			kept[r.Dir] = r.Why
		}
		return removed, kept
	}
	removed, kept := whys(prune())
	if len(removed) != 0 || kept[ended] != "other format" || kept[mapped] != "in use" || kept[named] != "in use" {
		t.Fatalf("prune: removed %v, kept %v; want none removed, %s kept as other format, the others in use", removed, kept, filepath.Base(ended))
	}
	code, stdout, _ = lockwatch(t, "prune", "--all", "--dry-run")
	if want := "would remove " + filepath.Base(ended) + " (arena format version 4, which this lockwatch cannot read: no live process maps or holds open its files or names it in LOCKWATCH_DIR)"; code != ExitOK || !strings.Contains(stdout, want) {
		t.Errorf("prune --all --dry-run said:\n%s\nwant the line %q", stdout, want)
	}
	out2 := prune("--all")
	removed, kept = whys(out2)
	if removed[ended] != "other format" || len(removed) != 1 || kept[mapped] != "in use" || kept[named] != "in use" {
		t.Fatalf("prune --all: removed %v, kept %v; want %s removed, the runs in use kept", removed, kept, filepath.Base(ended))
	}
	if out2.Remove[0].Format != 4 {
		t.Errorf("prune --all: removed %+v; want format 4 said", out2.Remove[0])
	}
	for _, d := range []string{mapped, named} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("prune --all removed %s, which a live process uses", d)
		}
	}
	if _, err := os.Stat(ended); !os.IsNotExist(err) {
		t.Errorf("prune --all left %s (%v)", ended, err)
	}

	// Its process gone, the mapped run is removed; the named one stays
	// while its process lives.
	in.Close()
	c.Process.Kill()
	c.Wait()
	removed, kept = whys(prune("--all"))
	if removed[mapped] != "other format" || kept[named] != "in use" {
		t.Fatalf("prune --all after the run's process died: removed %v, kept %v; want %s removed, %s kept", removed, kept, filepath.Base(mapped), filepath.Base(named))
	}
}
