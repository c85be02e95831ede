package goproc

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// TestRuntimeSymbols: the runtime's symbols read a chunk at a time are
// those f.Symbols finds among all, in the target's binary (go test strips
// its own).
func TestRuntimeSymbols(t *testing.T) {
	exe := buildTarget(t)
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var want []elf.Symbol
	for _, s := range all {
		if runtimeSyms[s.Name] {
			want = append(want, s)
		}
	}
	got, err := runtimeSymbols(f)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(ss []elf.Symbol) {
		sort.Slice(ss, func(i, j int) bool {
			return ss[i].Name < ss[j].Name || ss[i].Name == ss[j].Name && ss[i].Value < ss[j].Value
		})
	}
	byName(want)
	byName(got)
	if len(want) < 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("runtimeSymbols:\n%+v\nf.Symbols' runtime symbols:\n%+v", got, want)
	}

	// Headers that say the names' table and the symbol table run for a
	// terabyte, past the file's end: read as far as the file goes, at once.
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(data[0x28:])
	for i, s := range f.Sections {
		if s.Name == ".strtab" || s.Name == ".symtab" {
			binary.LittleEndian.PutUint64(data[shoff+uint64(i)*64+32:], 1<<40) // Elf64_Shdr.sh_size
		}
	}
	h, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	got, err = runtimeSymbols(h)
	if err != nil {
		t.Fatal(err)
	}
	byName(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("runtimeSymbols of tables a terabyte long:\n%+v\nwant:\n%+v", got, want)
	}
}

// buildTarget builds testdata/target, without cgo, for an internal test.
func buildTarget(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "target")
	cmd := exec.Command("go", "build", "-o", exe, "./testdata/target")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}
