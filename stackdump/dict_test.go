package stackdump

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stacks")
	d, err := CreateDict(path)
	if err != nil {
		t.Fatal(err)
	}
	a := []Frame{{Func: "main.a", File: "/a.go", Line: 1}}
	b := []Frame{{Func: "main.b", File: "/b.go", Line: 2}}
	for _, add := range []struct {
		id     uint64
		frames []Frame
	}{{1, a}, {0xffffffffffffffff, b}, {1, b}} { // the second id 1 is ignored
		if err := d.Add(add.id, add.frames); err != nil {
			t.Fatal(err)
		}
	}
	if !d.Has(1) || d.Has(2) {
		t.Errorf("Has(1), Has(2): got %v, %v; want true, false", d.Has(1), d.Has(2))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(2, a); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Add after Close: got %v; want os.ErrClosed", err)
	}
	// A process killed mid-write leaves an unfinished last line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"3","fra`)
	f.Close()

	got, err := ReadDict(path)
	if !errors.Is(err, ErrDictLine) {
		t.Errorf("ReadDict: got error %v; want ErrDictLine", err)
	}
	want := map[uint64][]Frame{1: a, 0xffffffffffffffff: b}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadDict: got stacks that differ (-want +got):\n%s", diff)
	}

	// Reopening must not write recorded stacks again.
	d, err = CreateDict(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.Has(1) {
		t.Errorf("Has(1) after reopening: got false; want true")
	}
	if err := d.Add(4, a); err != nil {
		t.Fatal(err)
	}
	got, _ = ReadDict(path)
	if len(got) != 3 || len(got[4]) != 1 {
		t.Errorf("ReadDict after an unfinished line and Add(4): got %v; want ids 1, 4 and max", got)
	}
}

func TestDictRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Skip(err)
	}
	if d, err := CreateDict(link); err == nil {
		d.Close()
		t.Errorf("CreateDict(symlink): got nil error; want one")
	}
}

func TestFramesOf(t *testing.T) {
	pcs := make([]uintptr, 16)
	n := runtime.Callers(1, pcs)
	frames := FramesOf(pcs[:n])
	if len(frames) == 0 || frames[0].Func != "github.com/lockwatch/lockwatch/stackdump.TestFramesOf" || frames[0].Line == 0 {
		t.Errorf("FramesOf: got %v; want TestFramesOf first", frames)
	}
	if FramesOf(nil) != nil {
		t.Errorf("FramesOf(nil): got non-nil; want nil")
	}
}
