package goproc

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestLayoutPrefix: the layout read from a prefix of .debug_info (as far
// as the runtime's types) is the one the whole section gives, on a
// program that links net/http (megabytes of DWARF, the runtime's types
// well before the end).
func TestLayoutPrefix(t *testing.T) {
	dir := t.TempDir()
	src := "package main\n\nimport _ \"net/http\"\n\nfunc main() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "big")
	cmd := exec.Command("go", "build", "-o", exe, "main.go")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := layoutDWARF(f)
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Section(".debug_info").Data()
	if err != nil {
		t.Fatal(err)
	}
	sec := func(name string) []byte {
		if s := f.Section(name); s != nil {
			b, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		return nil
	}
	d, err := dwarf.New(sec(".debug_abbrev"), nil, nil, info, nil, nil, nil, sec(".debug_str"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".debug_addr", ".debug_str_offsets", ".debug_line_str"} {
		if b := sec(name); b != nil {
			d.AddSection(name, b)
		}
	}
	cus, end := compileUnits(info)
	if end != len(info) || len(cus) < 10 {
		t.Fatalf("%d compile units ending at %d of %d", len(cus), end, len(info))
	}
	want, err := layoutFromDWARF(d, cus, true)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("from a prefix\n%#v\nfrom the whole\n%#v", got, want)
	}
	// The search stopped at a prefix: the runtime's last unit (its
	// types) ends before the last eighth.
	units := runtimeUnits(d.Reader(), cus)
	if len(units) == 0 || int(units[len(units)-1]) > len(info)*3/4 {
		t.Errorf("the runtime's types unit at %v of %d bytes: not a binary whose prefix suffices", units, len(info))
	}
}
