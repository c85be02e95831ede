package goproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// pclntab is the Go 1.20+ function table (runtime/symtab.go): function
// entries, names, files and lines, the pc-sp tables that unwinding needs,
// and the inline trees that turn one pc into several frames. It is read
// from the binary's file, never from the target's memory; every offset in
// it is checked against its table's length.
type pclntab struct {
	minLC     uint64
	nfunc     int
	textStart uint64 // file address of the text that entry offsets count from
	funcnames []byte
	cutab     []byte
	filetab   []byte
	pctab     []byte
	functab   []byte // ftab ([nfunc+1]{entryOff, funcOff uint32}) then the _func records

	// gofunc is the file address that funcdata offsets count from (the
	// go:func.* symbol); 0 when it could not be found: no inline trees.
	gofunc uint64
	// readFile reads n bytes at a file address of the binary (inline
	// trees lie in .gopclntab or .rodata, by release).
	readFile func(a uint64, n int) ([]byte, error)

	// Interned names and files: every goroutine parked in the same place
	// shares them. Bounded by the table's own counts.
	names map[int32]string
	files map[uint64]string
}

const (
	pclnMagic120 = 0xfffffff1 // Go 1.20 and later

	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3

	funcHeader     = 44 // bytes of a _func before its pcdata offsets
	inlinedCallLen = 16 // runtime.inlinedCall
	// maxInlineDepth bounds the inline frames of one pc (the compiler's
	// own limit is far lower).
	maxInlineDepth = 64
)

var errPclntab = errors.New("malformed .gopclntab")

func newPclntab(data []byte, textAddr uint64) (*pclntab, error) {
	if len(data) < 8+8*8 {
		return nil, fmt.Errorf("%w: %d bytes", errPclntab, len(data))
	}
	magic := le.Uint32(data)
	if magic != pclnMagic120 {
		return nil, fmt.Errorf("%w: magic %#x (a Go release before 1.20, or not Go)", errPclntab, magic)
	}
	if data[7] != 8 {
		return nil, fmt.Errorf("%w: pointer size %d, want 8 (64-bit targets only)", errPclntab, data[7])
	}
	word := func(i int) uint64 { return le.Uint64(data[8+8*i:]) }
	t := &pclntab{minLC: uint64(data[6]), nfunc: int(word(0)), textStart: textAddr, names: map[int32]string{}, files: map[uint64]string{}}
	sub := func(i int) ([]byte, error) {
		off := word(i)
		if off > uint64(len(data)) {
			return nil, fmt.Errorf("%w: table %d at %d, past its end %d", errPclntab, i, off, len(data))
		}
		return data[off:], nil
	}
	var err error
	if t.funcnames, err = sub(3); err != nil {
		return nil, err
	}
	if t.cutab, err = sub(4); err != nil {
		return nil, err
	}
	if t.filetab, err = sub(5); err != nil {
		return nil, err
	}
	if t.pctab, err = sub(6); err != nil {
		return nil, err
	}
	if t.functab, err = sub(7); err != nil {
		return nil, err
	}
	if t.minLC == 0 || t.nfunc <= 0 || uint64(t.nfunc+1)*8 > uint64(len(t.functab)) {
		return nil, fmt.Errorf("%w: %d functions in a table of %d bytes", errPclntab, t.nfunc, len(t.functab))
	}
	return t, nil
}

// fn is one function of the table.
type fn struct {
	t     *pclntab
	entry uint64 // file address
	end   uint64 // the next function's entry
	rec   []byte // the _func record and what follows it
}

// findFunc returns the function that holds the file address pc.
func (t *pclntab) findFunc(pc uint64) (fn, bool) {
	if pc < t.textStart {
		return fn{}, false
	}
	off := pc - t.textStart
	if off >= 1<<32 {
		return fn{}, false
	}
	// The last entry is the end of the text.
	end := uint64(le.Uint32(t.functab[t.nfunc*8:]))
	if off >= end {
		return fn{}, false
	}
	i := sort.Search(t.nfunc, func(i int) bool { return uint64(le.Uint32(t.functab[(i+1)*8:])) > off })
	if i >= t.nfunc {
		return fn{}, false
	}
	foff := uint64(le.Uint32(t.functab[i*8+4:]))
	if foff+funcHeader > uint64(len(t.functab)) {
		return fn{}, false
	}
	rec := t.functab[foff:]
	return fn{t: t, entry: t.textStart + uint64(le.Uint32(rec)), end: t.textStart + uint64(le.Uint32(t.functab[(i+1)*8:])), rec: rec}, true
}

func (f fn) u32(off int) uint32 { return le.Uint32(f.rec[off:]) }

func (f fn) name() string { return f.t.name(int32(f.u32(4))) }

func (t *pclntab) name(off int32) string {
	if off < 0 || int(off) >= len(t.funcnames) {
		return "?"
	}
	if s, ok := t.names[off]; ok {
		return s
	}
	b := t.funcnames[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	s := string(b)
	t.names[off] = s
	return s
}

// pcdata returns the offset of pcdata table i, 0 if none.
func (f fn) pcdata(i int) uint32 {
	if uint32(i) >= f.u32(28) || funcHeader+4*(i+1) > len(f.rec) {
		return 0
	}
	return f.u32(funcHeader + 4*i)
}

// funcdata returns the gofunc offset of funcdata i; ok false if none.
func (f fn) funcdata(i int) (uint32, bool) {
	npc := int(f.u32(28))
	nfd := int(f.rec[43])
	off := funcHeader + 4*npc + 4*i
	if i >= nfd || off+4 > len(f.rec) {
		return 0, false
	}
	v := f.u32(off)
	return v, v != ^uint32(0)
}

// value decodes the pc-value table at off for the file address pc: the
// runtime's pcvalue. ok is false when the table does not cover pc.
func (f fn) value(off uint32, pc uint64) (int32, bool) {
	if off == 0 || uint64(off) >= uint64(len(f.t.pctab)) {
		return -1, false
	}
	p := f.t.pctab[off:]
	cur, val := f.entry, int32(-1)
	for first := true; len(p) > 0; first = false {
		uv, n := binary.Uvarint(p)
		if n <= 0 || (uv == 0 && !first) {
			return -1, false
		}
		p = p[n:]
		d := int32(uv >> 1)
		if uv&1 != 0 {
			d = ^d
		}
		pcd, n := binary.Uvarint(p)
		if n <= 0 {
			return -1, false
		}
		p = p[n:]
		cur += pcd * f.t.minLC
		val += d
		if pc < cur {
			return val, true
		}
	}
	return -1, false
}

// maxValue is the largest value of the pc-value table at off over the
// whole function; -1 if none.
func (f fn) maxValue(off uint32) int32 {
	if off == 0 || uint64(off) >= uint64(len(f.t.pctab)) {
		return -1
	}
	p := f.t.pctab[off:]
	val, most := int32(-1), int32(-1)
	for first := true; len(p) > 0; first = false {
		uv, n := binary.Uvarint(p)
		if n <= 0 || (uv == 0 && !first) {
			break
		}
		p = p[n:]
		d := int32(uv >> 1)
		if uv&1 != 0 {
			d = ^d
		}
		_, n = binary.Uvarint(p)
		if n <= 0 {
			break
		}
		p = p[n:]
		val += d
		most = max(most, val)
	}
	return most
}

// spDelta is the frame size at pc: how far sp is below the frame's
// return address slot.
func (f fn) spDelta(pc uint64) (int32, bool) { return f.value(f.u32(16), pc) }

func (f fn) fileLine(pc uint64) (string, int) {
	line, _ := f.value(f.u32(24), pc)
	fno, ok := f.value(f.u32(20), pc)
	if !ok || fno < 0 {
		return "?", int(line)
	}
	i := uint64(f.u32(32)) + uint64(fno)
	if (i+1)*4 > uint64(len(f.t.cutab)) {
		return "?", int(line)
	}
	if s, ok := f.t.files[i]; ok {
		return s, int(line)
	}
	off := le.Uint32(f.t.cutab[i*4:])
	if off == ^uint32(0) || uint64(off) >= uint64(len(f.t.filetab)) {
		return "?", int(line)
	}
	b := f.t.filetab[off:]
	if j := bytes.IndexByte(b, 0); j >= 0 {
		b = b[:j]
	}
	s := string(b)
	f.t.files[i] = s
	return s, int(line)
}

// A Frame is one call frame, innermost first; inlined calls are frames of
// their own.
type Frame struct {
	Func string
	File string
	Line int
	PC   uint64 // the target's address (the return address of a caller frame)
	// Inlined: the call was inlined into the next frame.
	Inlined bool
}

// frames expands the file address pc of function f into its frames,
// innermost first: the inlined calls at pc, then f itself.
func (t *pclntab) frames(f fn, pc uint64, bias uint64, out []Frame) []Frame {
	tree, hasTree := t.inlineTree(f)
	ix := f.pcdata(pcdataInlTreeIndex)
	for depth := 0; hasTree && ix != 0 && depth < maxInlineDepth; depth++ {
		i, ok := f.value(ix, pc)
		if !ok || i < 0 {
			break
		}
		call, ok := t.inlinedCall(tree, int(i))
		if !ok {
			break
		}
		file, line := f.fileLine(pc)
		out = append(out, Frame{Func: printName(t.name(call.nameOff)), File: file, Line: line, PC: pc + bias, Inlined: true})
		pc = f.entry + uint64(uint32(call.parentPC))
	}
	file, line := f.fileLine(pc)
	return append(out, Frame{Func: printName(f.name()), File: file, Line: line, PC: pc + bias})
}

type inlinedCall struct {
	funcID   uint8
	nameOff  int32
	parentPC int32
}

// inlineTree returns the file address of f's inline tree.
func (t *pclntab) inlineTree(f fn) (uint64, bool) {
	if t.gofunc == 0 || t.readFile == nil {
		return 0, false
	}
	off, ok := f.funcdata(funcdataInlTree)
	if !ok {
		return 0, false
	}
	return t.gofunc + uint64(off), true
}

// inlinedCall reads entry i of the inline tree at addr from the binary.
func (t *pclntab) inlinedCall(addr uint64, i int) (inlinedCall, bool) {
	if i < 0 || i > 1<<20 {
		return inlinedCall{}, false
	}
	b, err := t.readFile(addr+uint64(i)*inlinedCallLen, inlinedCallLen)
	if err != nil {
		return inlinedCall{}, false
	}
	return inlinedCall{funcID: b[0], nameOff: int32(le.Uint32(b[4:])), parentPC: int32(le.Uint32(b[8:]))}, true
}

// printName is a function's name as tracebacks print it: the type
// arguments of a generic function shown as "[...]".
func printName(name string) string {
	i := strings.IndexByte(name, '[')
	if i < 0 {
		return name
	}
	j := strings.LastIndexByte(name, ']')
	if j <= i {
		return name
	}
	return name[:i] + "[...]" + name[j+1:]
}
