package cli

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/source/filelocksrc"
)

// A knot whose flock holders are found by comparing descriptors with the
// lock's (the taker's descriptors are not all stat'ed) still names the
// file of a POSIX lock the taker holds and someone waits for: its
// descriptors are stat'ed then.
func TestFlockKnotNamesPOSIXFile(t *testing.T) {
	dir := t.TempDir()
	f, p := filepath.Join(dir, "flocked"), filepath.Join(dir, "records")
	h, wf, wp := newLocker(t), newLocker(t), newLocker(t)
	h.do("open f " + f)
	h.do("flock f ex")
	h.do("open p " + p)
	h.do("posix p w 0 1")
	wf.do("open f " + f)
	wf.ask("flock f ex")
	wp.do("open p " + p)
	wp.ask("posix p w 0 1")
	awaitFileWaiters(t, f, 1)
	awaitFileWaiters(t, p, 1)

	snap, err := filelocksrc.New(wf.pid()).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range snap.Locks {
		names = append(names, l.Kind+" "+l.Name)
	}
	slices.Sort(names)
	want := []string{"flock " + f, "posix " + p + " [0-0]"}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("locks of the knot:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
}
