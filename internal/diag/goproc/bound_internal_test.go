package goproc

import (
	"debug/elf"
	"strings"
	"testing"
)

// TestSectionBound: a section over the bound is refused with its name and
// size; one within it, or none, passes.
func TestSectionBound(t *testing.T) {
	big := &elf.Section{SectionHeader: elf.SectionHeader{Name: ".gopclntab", Size: 3 << 30}}
	err := sectionBound("/bin/x", big, maxSection)
	if err == nil || !strings.Contains(err.Error(), ".gopclntab is 3072 MiB, more than lockwatch reads (1024 MiB)") {
		t.Errorf("3 GiB .gopclntab: %v; want it refused, named with its size", err)
	}
	small := &elf.Section{SectionHeader: elf.SectionHeader{Name: ".symtab", Size: 1 << 20}}
	if err := sectionBound("/bin/x", small, maxSection); err != nil {
		t.Errorf("1 MiB .symtab: %v", err)
	}
	if err := sectionBound("/bin/x", nil, maxSection); err != nil {
		t.Errorf("no section: %v", err)
	}
}
