package stackdict

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lockwatch/lockwatch/internal/rt/record"
)

func TestDict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stacks")
	d, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a := []record.Frame{{Func: "main.a", File: "/a.go", Line: 1}}
	b := []record.Frame{{Func: "main.b", File: "/b.go", Line: 2}}
	for _, add := range []struct {
		id     uint64
		frames []record.Frame
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

	got, err := Read(path)
	if !errors.Is(err, ErrLine) {
		t.Errorf("Read: got error %v; want ErrLine", err)
	}
	want := map[uint64][]record.Frame{1: a, 0xffffffffffffffff: b}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read: got stacks that differ (-want +got):\n%s", diff)
	}

	// Reopening must not write recorded stacks again.
	d, err = Create(path)
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
	got, _ = Read(path)
	if len(got) != 3 || len(got[4]) != 1 {
		t.Errorf("Read after an unfinished line and Add(4): got %v; want ids 1, 4 and max", got)
	}
}

func TestDictRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Skip(err)
	}
	if d, err := Create(link); err == nil {
		d.Close()
		t.Errorf("Create(symlink): got nil error; want one")
	}
}
