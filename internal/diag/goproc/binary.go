package goproc

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// A Binary is a Go executable's model: its release, the runtime's layout,
// the runtime symbols the reader needs and the function table. It is read
// from the file alone; the target is not touched. It caches what it
// decodes, so it is not safe for concurrent use.
type Binary struct {
	Path      string
	GoVersion string // "go1.26.8"
	// LayoutSource says where the layout came from: "DWARF", or
	// "table go1.26" for a stripped binary.
	LayoutSource string
	// Stripped: the binary has no symbol table; the runtime's variables
	// are found by a bounded scan of its data.
	Stripped bool
	PIE      bool

	f      *elf.File
	file   *os.File
	layout Layout
	syms   map[string]elf.Symbol
	objs   []elf.Symbol // data symbols by address, to name a global mutex
	tab    *pclntab
	text   *elf.Section
	// unlocks caches unlockKind by wrapper entry.
	unlocks map[uint64]string
}

// ErrNotGo is returned for a binary that is not a Go program.
var ErrNotGo = errors.New("not a Go program")

// ErrRelease is returned for a Go release whose runtime the reader does not
// know, in a stripped binary (a binary with DWARF describes itself).
var ErrRelease = errors.New("unknown Go release")

// runtimeSyms are the symbols the reader uses when the binary has them.
var runtimeSyms = map[string]bool{
	"runtime.allglen": true, "runtime.allgptr": true, "runtime.waitReasonStrings": true,
	"runtime.semtable": true, "go:func.*": true, "runtime.firstmoduledata": true, "runtime.text": true,
}

// OpenBinary reads the Go executable at path.
func OpenBinary(path string) (*Binary, error) { return openBinaryWith(path, false) }

// openBinaryWith reads the binary; quick takes the layout from the table
// when its release is known, without reading the DWARF (Options.Quick).
func openBinaryWith(path string, quick bool) (*Binary, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	b, err := openBinary(path, file, quick)
	if err != nil {
		file.Close()
		return nil, err
	}
	return b, nil
}

func openBinary(path string, file *os.File, quick bool) (*Binary, error) {
	f, err := elf.NewFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (not an ELF executable: %v)", path, ErrNotGo, err)
	}
	b := &Binary{Path: path, f: f, file: file, PIE: f.Type == elf.ET_DYN, syms: map[string]elf.Symbol{}}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: a %v %v binary: only linux/amd64 Go programs are read", path, f.Class, f.Machine)
	}
	bi, err := buildinfo.Read(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (no Go build information: %v)", path, ErrNotGo, err)
	}
	b.GoVersion = bi.GoVersion
	pcln := f.Section(".gopclntab")
	b.text = f.Section(".text")
	if pcln == nil || b.text == nil {
		return nil, fmt.Errorf("%s: %w: no .gopclntab", path, ErrNotGo)
	}
	if quick && pcln.Size > quickPclntabMax {
		// A quick look reads any binary in bounded memory.
		return nil, fmt.Errorf("%s: its .gopclntab is %d MiB, more than a quick look reads (%d MiB): 'lockwatch attach PID' reads it", path, pcln.Size>>20, quickPclntabMax>>20)
	}
	if err := sectionBound(path, pcln, maxSection); err != nil {
		return nil, err
	}
	data, err := sectionData(file, pcln)
	if err != nil {
		return nil, fmt.Errorf("%s: reading .gopclntab: %v", path, err)
	}
	if b.tab, err = newPclntab(data, b.text.Addr); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", path, b.GoVersion, err)
	}
	b.tab.readFile = b.fileBytes

	var derr error
	if L, ok := tableLayout(b.GoVersion, f.Machine); ok && quick {
		b.layout, b.LayoutSource = L, "table "+release(b.GoVersion)
	} else {
		b.layout, derr = layoutDWARF(f)
		b.LayoutSource = "DWARF"
	}
	if derr != nil {
		L, ok := tableLayout(b.GoVersion, f.Machine)
		if !ok {
			return nil, fmt.Errorf("%s: %w: built by %s without DWARF (stripped), and this lockwatch knows the runtime of %s only; rebuild it without -ldflags=-w, or use a lockwatch that knows %s",
				path, ErrRelease, b.GoVersion, strings.Join(KnownReleases(), ", "), release(b.GoVersion))
		}
		b.layout, b.LayoutSource = L, "table "+release(b.GoVersion)
	} else if L, ok := tableLayout(b.GoVersion, f.Machine); ok && b.LayoutSource == "DWARF" {
		b.layout.WaitReasons = L.WaitReasons // read from memory when the symbol is there
	}

	var syms []elf.Symbol
	if quick {
		// The runtime's symbols only, a chunk at a time: no data
		// symbols, so no global lock is named.
		syms, err = runtimeSymbols(f)
		b.Stripped = err != nil
	} else if err := sectionBound(path, f.Section(".symtab"), maxSection); err != nil {
		return nil, err
	} else if syms, err = f.Symbols(); err != nil || len(syms) == 0 {
		b.Stripped = true
	}
	for _, s := range syms {
		if runtimeSyms[s.Name] {
			b.syms[s.Name] = s
		}
		if elf.ST_TYPE(s.Info) == elf.STT_OBJECT && s.Size > 0 && !strings.HasPrefix(s.Name, "runtime.") && !strings.HasPrefix(s.Name, "go:") && !strings.HasPrefix(s.Name, "type:") {
			b.objs = append(b.objs, s)
		}
	}
	sort.Slice(b.objs, func(i, j int) bool { return b.objs[i].Value < b.objs[j].Value })
	if s, ok := b.syms["go:func.*"]; ok {
		b.tab.gofunc = s.Value
	}
	if s, ok := b.syms["runtime.text"]; ok && b.section(s.Value, 1) == b.text {
		// Linked by gcc (-linkmode=external), .text starts with C's
		// start-up code; the pclntab counts from runtime.text. Without
		// symbols, Read finds it in the module data (findModule).
		b.tab.textStart = s.Value
	}
	return b, nil
}

// sectionData reads section s of the binary in one piece of its size
// (debug/elf's Data grows its buffer as it reads, to twice the size at
// times), once the file is known to hold it.
func sectionData(file *os.File, s *elf.Section) ([]byte, error) {
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 || s.Offset > uint64(fi.Size()) || s.Size > uint64(fi.Size())-s.Offset {
		return nil, fmt.Errorf("the section of %d bytes at %d is not in the file of %d bytes, or compressed", s.Size, s.Offset, fi.Size())
	}
	b := make([]byte, s.Size)
	if _, err := file.ReadAt(b, int64(s.Offset)); err != nil {
		return nil, err
	}
	return b, nil
}

// layoutDWARF reads the layout from the binary's DWARF, decompressing its
// .debug_info only as far as the unit that describes the runtime's types:
// the linker writes those into one unit named "runtime", often well
// before the end (a third of the way into a 4 MB .debug_info), and the
// line and location tables, which f.DWARF would decompress too, are not
// needed at all. The last runtime unit read so far is searched at each
// eighth of the section; a layout found in a prefix is the one the whole
// would give (a type a unit refers to beyond the prefix fails the search
// there, and the next prefix is larger).
func layoutDWARF(f *elf.File) (Layout, error) {
	info := f.Section(".debug_info")
	if info == nil || info.Size == 0 {
		return Layout{}, errors.New("no DWARF (.debug_info)")
	}
	if info.Size > maxDebugInfo {
		return Layout{}, fmt.Errorf("a .debug_info of %d bytes (more than %d)", info.Size, maxDebugInfo)
	}
	small := map[string][]byte{}
	for _, name := range []string{".debug_abbrev", ".debug_str", ".debug_addr", ".debug_str_offsets", ".debug_line_str"} {
		if s := f.Section(name); s != nil {
			b, err := s.Data()
			if err != nil {
				return Layout{}, fmt.Errorf("%s: %v", name, err)
			}
			small[name] = b
		}
	}
	open := func(info []byte) (*dwarf.Data, error) {
		d, err := dwarf.New(small[".debug_abbrev"], nil, nil, info, nil, nil, nil, small[".debug_str"])
		if err != nil {
			return nil, err
		}
		// DWARF 5's indirect attributes.
		for _, name := range []string{".debug_addr", ".debug_str_offsets", ".debug_line_str"} {
			if b := small[name]; b != nil {
				if err := d.AddSection(name, b); err != nil {
					return nil, err
				}
			}
		}
		return d, nil
	}
	rd := info.Open()
	// As large as its header says (bounded above): memory not written to
	// is not used, and a shorter section ends the read.
	buf := make([]byte, 0, info.Size)
	var tried dwarf.Offset // the last runtime unit searched
	const steps = 8
	for step := uint64(1); step <= steps; step++ {
		want := int(info.Size * step / steps)
		for len(buf) < want {
			n := min(want-len(buf), 1<<20)
			buf = slices.Grow(buf, n)
			if _, err := io.ReadFull(rd, buf[len(buf):len(buf)+n]); err != nil {
				return Layout{}, fmt.Errorf(".debug_info: %v", err)
			}
			buf = buf[:len(buf)+n]
		}
		cus, cut := compileUnits(buf)
		d, err := open(buf[:cut])
		if step == steps {
			if err != nil {
				return Layout{}, err
			}
			return layoutFromDWARF(d, cus, true)
		}
		if err != nil {
			continue
		}
		// The prefix's last runtime unit, if it is a new one.
		units := runtimeUnits(d.Reader(), cus)
		if len(units) == 0 || units[len(units)-1] == tried {
			continue
		}
		tried = units[len(units)-1]
		if L, err := layoutFromDWARF(d, []dwarf.Offset{tried}, false); err == nil {
			return L, nil
		}
	}
	return Layout{}, errors.New("unreachable")
}

// quickPclntabMax bounds the .gopclntab that a quick look (Options.Quick,
// lockwatch ps) reads whole: a binary of about 200 MB has one of 64 MiB.
// The symbol table is read a chunk at a time (runtimeSymbols).
const quickPclntabMax = 64 << 20

// maxSection bounds the .gopclntab and the symbol table that an attach
// reads whole, as maxDebugInfo bounds .debug_info: the largest Go programs
// have tables of a few hundred MiB; a larger one is refused, whatever the
// file says.
const maxSection = 1 << 30

// sectionBound refuses a section larger than max (nil is no section).
func sectionBound(path string, s *elf.Section, max uint64) error {
	if s == nil || s.Size <= max {
		return nil
	}
	return fmt.Errorf("%s: its %s is %d MiB, more than lockwatch reads (%d MiB): not a binary lockwatch can read in bounded memory", path, s.Name, s.Size>>20, max>>20)
}

// maxDebugInfo bounds the .debug_info decompressed (its header says its
// size): a larger one is refused rather than read.
const maxDebugInfo = 1 << 30

// compileUnits lists the entries of the compile units of a .debug_info
// prefix, from the units' headers alone (a 32-bit length, or 0xffffffff
// and a 64-bit one, then the version...), and where the last complete one
// ends.
func compileUnits(b []byte) (cus []dwarf.Offset, end int) {
	off := 0
	for off+4 <= len(b) {
		n, hdr, offSize := uint64(le.Uint32(b[off:])), 4, 4
		if n == 0xffffffff {
			if off+12 > len(b) {
				break
			}
			n, hdr, offSize = le.Uint64(b[off+4:]), 12, 8
		} else if n >= 0xfffffff0 {
			break // reserved: not a unit
		}
		if n > uint64(len(b)-off-hdr) || n < 2 {
			break
		}
		// The unit's first entry: after the version, then (DWARF 5) the
		// unit type and address size and the abbreviations' offset, or
		// (2 to 4) the abbreviations' offset and the address size.
		entry := off + hdr + 2 + offSize + 1
		version := le.Uint16(b[off+hdr:])
		if version >= 5 {
			entry++
			if ut := b[off+hdr+2]; ut != 1 && ut != 3 { // DW_UT_compile, DW_UT_partial
				entry = 0
			}
		}
		if entry > 0 && entry < off+hdr+int(n) {
			cus = append(cus, dwarf.Offset(entry))
		}
		off += hdr + int(n)
	}
	return cus, off
}

// Close closes the binary's file.
func (b *Binary) Close() error { return b.file.Close() }

// Layout returns the runtime layout the binary is read with.
func (b *Binary) Layout() Layout { return b.layout }

// symbolAt names the data symbol holding the file address a: "main.pair+8".
func (b *Binary) symbolAt(a uint64) (string, bool) {
	i := sort.Search(len(b.objs), func(i int) bool { return b.objs[i].Value > a }) - 1
	if i < 0 {
		return "", false
	}
	s := b.objs[i]
	if a >= s.Value+s.Size {
		return "", false
	}
	if a == s.Value {
		return s.Name, true
	}
	return fmt.Sprintf("%s+%d", s.Name, a-s.Value), true
}

// section returns the section holding the file address range [a, a+n).
func (b *Binary) section(a uint64, n uint64) *elf.Section {
	for _, s := range b.f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Addr != 0 && a >= s.Addr && a+n <= s.Addr+s.Size && a+n >= a {
			return s
		}
	}
	return nil
}

// fileBytes reads n bytes at the file address a from the binary.
func (b *Binary) fileBytes(a uint64, n int) ([]byte, error) {
	s := b.section(a, uint64(n))
	if s == nil {
		return nil, fmt.Errorf("%s: address %#x+%d is in no section", b.Path, a, n)
	}
	buf := make([]byte, n)
	if _, err := s.ReadAt(buf, int64(a-s.Addr)); err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// fileUpTo reads up to n bytes at the file address a, fewer at the end of
// its section; nil if a is in no section.
func (b *Binary) fileUpTo(a uint64, n int) []byte {
	for ; n > 0; n-- {
		if s := b.section(a, uint64(n)); s != nil {
			buf := make([]byte, n)
			if _, err := s.ReadAt(buf, int64(a-s.Addr)); err != nil {
				return nil
			}
			return buf
		}
		if b.section(a, 1) == nil {
			return nil
		}
	}
	return nil
}

// fileStrings reads an array of n Go strings at the file address a from
// the binary's data (valid in a non-PIE binary, whose data holds final
// addresses).
func (b *Binary) fileStrings(a uint64, n int) ([]string, error) {
	hdr, err := b.fileBytes(a, n*16)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		p, l := le.Uint64(hdr[i*16:]), le.Uint64(hdr[i*16+8:])
		if l == 0 {
			continue
		}
		if l > 256 {
			return nil, fmt.Errorf("%s: string %d of %#x is %d bytes long", b.Path, i, a, l)
		}
		s, err := b.fileBytes(p, int(l))
		if err != nil {
			return nil, err
		}
		out[i] = string(s)
	}
	return out, nil
}

// unlockKinds says what a deferred-call wrapper (pkg.F.deferwrapN)
// unlocks: "Mutex", "RWMutex" (Unlock) or "RWMutex.R" (RUnlock), from the
// calls its code makes or the calls inlined into it; "" if none.
func (b *Binary) unlockKind(f fn) string {
	if k, ok := b.unlocks[f.entry]; ok {
		return k
	}
	k := b.unlockKindOf(f)
	if b.unlocks == nil {
		b.unlocks = map[uint64]string{}
	}
	b.unlocks[f.entry] = k
	return k
}

func (b *Binary) unlockKindOf(f fn) string {
	var names []string
	// Inlined callees: every entry of its inline tree.
	if tree, ok := b.tab.inlineTree(f); ok {
		n := f.maxValue(f.pcdata(pcdataInlTreeIndex))
		for i := 0; i <= int(n) && i < 64; i++ {
			c, ok := b.tab.inlinedCall(tree, i)
			if !ok || c.nameOff < 0 || int(c.nameOff) >= len(b.tab.funcnames) {
				break
			}
			names = append(names, b.tab.name(c.nameOff))
		}
	}
	// Direct calls: E8 rel32 to a function's entry, in its first bytes
	// (a wrapper is a few instructions long).
	n := min(f.end-f.entry, 256)
	if c, err := b.fileBytes(f.entry, int(n)); err == nil {
		for i := 0; i+5 <= len(c); i++ {
			if c[i] != 0xe8 {
				continue
			}
			target := f.entry + uint64(i) + 5 + uint64(int64(int32(le.Uint32(c[i+1:]))))
			if tf, ok := b.tab.findFunc(target); ok && tf.entry == target {
				names = append(names, tf.name())
			}
		}
	}
	kind := ""
	for _, n := range names {
		switch n {
		case "sync.(*Mutex).Unlock", "internal/sync.(*Mutex).Unlock":
			if kind == "" {
				kind = "Mutex"
			}
		case "sync.(*RWMutex).Unlock":
			kind = "RWMutex"
		case "sync.(*RWMutex).RUnlock":
			kind = "RWMutex.R"
		}
	}
	return kind
}
