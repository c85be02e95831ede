package goproc

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNoBinary is returned for a core file whose binary is not found.
var ErrNoBinary = errors.New("the core's binary is not found")

// coreMem is a core file's memory: its PT_LOAD segments, and for what the
// kernel left out of them (read-only file mappings: the text), the
// binary's own segments.
type coreMem struct {
	f    *os.File
	segs []coreSeg
	// exe are the binary's loadable segments, at run-time addresses.
	exe []coreSeg
}

type coreSeg struct {
	vaddr, memsz, filesz, off uint64
	r                         io.ReaderAt
}

func (m *coreMem) ReadPieces(ps []Piece) error {
	for i := range ps {
		p := &ps[i]
		p.OK = m.read(p.Addr, p.Buf)
	}
	return nil
}

// read fills buf from a, across segments if need be.
func (m *coreMem) read(a uint64, buf []byte) bool {
	if a+uint64(len(buf)) < a {
		return false
	}
	for len(buf) > 0 {
		n, ok := m.readOne(a, buf)
		if !ok {
			return false
		}
		a, buf = a+uint64(n), buf[n:]
	}
	return true
}

// readOne reads the start of buf from the segment holding a: from the
// core when it holds it, else from the binary.
func (m *coreMem) readOne(a uint64, buf []byte) (int, bool) {
	for _, segs := range [][]coreSeg{m.segs, m.exe} {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].vaddr+segs[i].memsz > a })
		if i >= len(segs) {
			continue
		}
		s := segs[i]
		if a < s.vaddr || a >= s.vaddr+s.filesz {
			continue // not in it, or not written to the core
		}
		n := min(uint64(len(buf)), s.vaddr+s.filesz-a)
		if _, err := s.r.ReadAt(buf[:n], int64(s.off+(a-s.vaddr))); err != nil {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

// IsCore reports whether the file at path is an ELF core file.
func IsCore(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Type == elf.ET_CORE
}

// OpenCore opens a core file of a Go program for reading, with its binary:
// opts.Exe, else the path the core names (its NT_FILE mappings). The
// binary must be the one that ran: its Go build ID is checked against the
// core's memory when the core holds it.
func OpenCore(path string, opts Options) (*Process, error) {
	opts = opts.withDefaults()
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	p, err := openCore(path, file, opts)
	if err != nil {
		file.Close()
		return nil, err
	}
	p.coreTime = fi.ModTime()
	return p, nil
}

func openCore(path string, file *os.File, opts Options) (*Process, error) {
	cf, err := elf.NewFile(file)
	if err != nil || cf.Type != elf.ET_CORE {
		return nil, fmt.Errorf("%s is not a core file", path)
	}
	if cf.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: a %v core: only linux/amd64 cores are read", path, cf.Machine)
	}
	m := &coreMem{f: file}
	var pid int
	var auxv []byte
	var files []string
	for _, prog := range cf.Progs {
		switch prog.Type {
		case elf.PT_LOAD:
			m.segs = append(m.segs, coreSeg{vaddr: prog.Vaddr, memsz: prog.Memsz, filesz: prog.Filesz, off: prog.Off, r: file})
		case elf.PT_NOTE:
			notes, err := io.ReadAll(io.NewSectionReader(file, int64(prog.Off), int64(min(prog.Filesz, 64<<20))))
			if err != nil {
				return nil, fmt.Errorf("%s: reading its notes: %v", path, err)
			}
			pid, auxv, files = coreNotes(notes, pid, auxv, files)
		}
	}
	sort.Slice(m.segs, func(i, j int) bool { return m.segs[i].vaddr < m.segs[j].vaddr })
	exe := opts.Exe
	if exe == "" {
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: %w: the core names no files; give the binary with --exe", path, ErrNoBinary)
		}
		exe = files[0]
		if _, err := os.Stat(exe); err != nil {
			// Beside the core, as it is often copied.
			if alt := filepath.Join(filepath.Dir(path), filepath.Base(exe)); fileExists(alt) {
				exe = alt
			} else {
				return nil, fmt.Errorf("%s: %w: %s (the path the core names) does not exist; give the binary with --exe", path, ErrNoBinary, exe)
			}
		}
	}
	b, err := OpenBinary(exe)
	if err != nil {
		if errors.Is(err, ErrNotGo) {
			return nil, fmt.Errorf("%s: the binary %s is not a Go program: %w", path, exe, ErrNotGo)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := &Process{PID: pid, Binary: b, Core: path, mem: m, opts: opts}
	p.closer = func() error { b.Close(); return file.Close() }
	entry, ok := auxEntry(auxv)
	switch {
	case b.PIE && !ok:
		b.Close()
		return nil, fmt.Errorf("%s: no AT_ENTRY in its auxiliary vector: cannot place its PIE binary", path)
	case b.PIE:
		p.bias = entry - b.f.Entry
	case ok && entry != b.f.Entry:
		b.Close()
		return nil, fmt.Errorf("%s: the binary %s is not the one that ran (its entry point differs from the core's); give the right one with --exe", path, exe)
	}
	for _, prog := range b.f.Progs {
		if prog.Type == elf.PT_LOAD {
			m.exe = append(m.exe, coreSeg{vaddr: prog.Vaddr + p.bias, memsz: prog.Memsz, filesz: prog.Filesz, off: prog.Off, r: b.file})
		}
	}
	sort.Slice(m.exe, func(i, j int) bool { return m.exe[i].vaddr < m.exe[j].vaddr })
	if err := p.checkBuildID(); err != nil {
		b.Close()
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return p, nil
}

// checkBuildID compares the binary's Go build ID note with the core's
// copy of it (the kernel writes the first page of each file mapping).
func (p *Process) checkBuildID() error {
	s := p.Binary.f.Section(".note.go.buildid")
	if s == nil {
		return nil
	}
	want, err := s.Data()
	if err != nil {
		return nil
	}
	got := make([]byte, len(want))
	cm := p.mem.(*coreMem)
	// Only from the core's own segments: the binary's would agree always.
	only := &coreMem{segs: cm.segs}
	if !only.read(s.Addr+p.bias, got) {
		return nil // not dumped: cannot tell
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the binary %s is not the one that ran (its Go build ID differs from the core's); give the right one with --exe", p.Binary.Path)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// coreNotes reads the notes a core needs: the pid (NT_PRPSINFO), the
// auxiliary vector (NT_AUXV) and the files mapped (NT_FILE).
func coreNotes(b []byte, pid int, auxv []byte, files []string) (int, []byte, []string) {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		off := 12 + align(namesz)
		end := off + align(descsz)
		if off > uint64(len(b)) || off+descsz > uint64(len(b)) {
			break
		}
		desc := b[off : off+descsz]
		switch elf.NType(typ) {
		case elf.NT_PRPSINFO:
			// struct elf_prpsinfo: pr_pid at 24 on amd64.
			if len(desc) >= 28 {
				pid = int(le.Uint32(desc[24:]))
			}
		case 6: // NT_AUXV
			auxv = desc
		case 0x46494c45: // NT_FILE
			files = ntFiles(desc)
		}
		if end > uint64(len(b)) {
			break
		}
		b = b[end:]
	}
	return pid, auxv, files
}

// ntFiles returns the paths of NT_FILE, the first mapping's first: count,
// page size, count x {start, end, offset}, then the NUL-separated names.
func ntFiles(d []byte) []string {
	if len(d) < 16 {
		return nil
	}
	n := le.Uint64(d)
	if n > 1<<20 || 16+n*24 > uint64(len(d)) {
		return nil
	}
	names := strings.Split(string(d[16+n*24:]), "\x00")
	var out []string
	seen := map[string]bool{}
	for _, name := range names {
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}
