package goproc

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
)

// symChunk is how much of the symbol table and of its names
// runtimeSymbols reads at a time.
const symChunk = 64 << 10

// runtimeSymbols returns the symbols of runtimeSyms that the binary's
// symbol table holds, reading the table and its names a chunk at a time:
// a quick look (Options.Quick) takes the same memory for a binary of a
// hundred thousand symbols as for a small one, where f.Symbols builds them
// all. First the places in the names' table where each wanted name is
// written (ended by its NUL), then the symbols whose name is at one of
// them. It returns an error when the binary has no symbol table.
func runtimeSymbols(f *elf.File) ([]elf.Symbol, error) {
	symtab := f.Section(".symtab")
	if symtab == nil || symtab.Type != elf.SHT_SYMTAB || f.Class != elf.ELFCLASS64 ||
		int(symtab.Link) <= 0 || int(symtab.Link) >= len(f.Sections) {
		return nil, errors.New("no symbol table")
	}
	strtab := f.Sections[symtab.Link]
	// The wanted names' places in the names' table.
	longest := 0
	for name := range runtimeSyms {
		longest = max(longest, len(name)+1)
	}
	at := map[uint32]string{}
	buf := make([]byte, symChunk+longest)
	for off := uint64(0); off < strtab.Size; off += symChunk {
		want := min(uint64(len(buf)), strtab.Size-off)
		n, err := strtab.ReadAt(buf[:want], int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n == 0 {
			break // the file ends before the section its header describes
		}
		b := buf[:n]
		for name := range runtimeSyms {
			w := append([]byte(name), 0)
			for i := 0; ; {
				k := bytes.Index(b[i:], w)
				if k < 0 {
					break
				}
				// Found past the chunk's own part is found again by the
				// next chunk.
				if p := i + k; p < symChunk {
					at[uint32(off)+uint32(p)] = name
				}
				i += k + 1
			}
		}
	}
	// The symbols named there.
	const size = 24 // Elf64_Sym
	var out []elf.Symbol
	ents := make([]byte, symChunk/size*size)
	for off := uint64(size); off+size <= symtab.Size; off += uint64(len(ents)) { // entry 0 is the null symbol
		n, err := symtab.ReadAt(ents[:min(uint64(len(ents)), (symtab.Size-off)/size*size)], int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		for e := ents[:n/size*size]; len(e) >= size; e = e[size:] {
			name, ok := at[binary.LittleEndian.Uint32(e)]
			if !ok {
				continue
			}
			out = append(out, elf.Symbol{Name: name, Info: e[4], Other: e[5], Section: elf.SectionIndex(binary.LittleEndian.Uint16(e[6:])),
				Value: binary.LittleEndian.Uint64(e[8:]), Size: binary.LittleEndian.Uint64(e[16:])})
		}
		if n < len(ents) {
			break
		}
	}
	return out, nil
}
