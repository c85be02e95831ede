package goproc

import (
	"debug/elf"
	"os"
	"testing"
)

// FuzzPclntab decodes damaged function tables: a binary is as untrusted as
// the memory of the process that runs it. Seeded with this test binary's
// own table, cut short.
func FuzzPclntab(f *testing.F) {
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	ef, err := elf.Open(self)
	if err != nil {
		f.Fatal(err)
	}
	defer ef.Close()
	s := ef.Section(".gopclntab")
	text := ef.Section(".text")
	data, err := s.Data()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[:min(len(data), 4096)], uint64(0x40))
	f.Add(data[:min(len(data), 64)], uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, off uint64) {
		tab, err := newPclntab(b, text.Addr)
		if err != nil {
			return
		}
		tab.readFile = func(a uint64, n int) ([]byte, error) { return make([]byte, n), nil }
		tab.gofunc = text.Addr
		for _, pc := range []uint64{text.Addr + off, text.Addr + off*7, text.Addr} {
			fn, ok := tab.findFunc(pc)
			if !ok {
				continue
			}
			tab.frames(fn, pc, 0, nil)
			fn.spDelta(pc)
			fn.maxValue(fn.pcdata(pcdataInlTreeIndex))
			fn.funcdata(funcdataOpenCodedDefer)
		}
	})
}
