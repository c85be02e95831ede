package goproc

import (
	"debug/elf"
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
	f, err := elf.Open(buildTarget(t))
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
