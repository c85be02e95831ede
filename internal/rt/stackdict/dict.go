// Package stackdict is the format of a lockreg process's stack dictionary:
// the append-only file of symbolized stacks, each written once under a
// 64-bit id, that lock records name by that id (Dict, written by lockreg
// inside the program), and its bounded readers for lockwatch (Read, Decode,
// Index), which read the stacks of a process even after it died.
//
// The file is JSON lines, one stack a line:
//
//	{"id":"<hex>","frames":[{"func":"main.f","file":"/src/main.go","line":12},...]}
package stackdict

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/lockwatch/lockwatch/internal/diag/jsonbudget"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// A Dict is a process's stack dictionary: an append-only file of symbolized
// stacks, each written once under a 64-bit id. Lock records hold the small id;
// the dictionary keeps the frames readable after the process has died.
//
// The file is JSON lines, one stack a line, each written by a single write(2)
// so that a process killed mid-way leaves at most one unfinished last line.
//
// A Dict is safe for concurrent use.
type Dict struct {
	mu   sync.Mutex
	f    *os.File
	seen map[uint64]bool
}

type dictLine struct {
	ID     string         `json:"id"` // hex, so that JSON readers do not round it
	Frames []record.Frame `json:"frames"`
}

// Create opens the dictionary file at path for appending, creating it
// with mode 0600. A symbolic link at path is refused.
func Create(path string) (*Dict, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	return Open(f)
}

// Open makes a Dict of f, a dictionary file opened for reading and
// appending (os.O_RDWR|os.O_APPEND), which it then owns. Stacks already in
// the file (the same process reopening it) are not written again.
func Open(f *os.File) (*Dict, error) {
	d := &Dict{f: f, seen: make(map[uint64]bool)}
	// Only the ids are read, never the frames: a process reopening its
	// dictionary must not pay for what is in it. Unreadable lines are
	// reported by Read to whoever reads the file; here they only mean
	// those stacks are not seen.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() > 0 {
		br := bufio.NewReaderSize(io.NewSectionReader(f, 0, min(fi.Size(), MaxSize)), 64<<10)
		var buf []byte
		for {
			line, _, err := nextLine(br, MaxLine, &buf)
			if id, ok := lineID(line); ok {
				d.seen[id] = true
			}
			if err != nil {
				break
			}
		}
		// An unfinished last line (a writer died mid-way) must not swallow
		// the next line: end it.
		var b [1]byte
		if _, err := f.ReadAt(b[:], fi.Size()-1); err == nil && b[0] != '\n' {
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	return d, nil
}

// Add records frames under id unless id is already recorded. It returns once
// the line is written to the file.
func (d *Dict) Add(id uint64, frames []record.Frame) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[id] {
		return nil
	}
	if d.f == nil {
		return os.ErrClosed
	}
	b, err := json.Marshal(dictLine{ID: strconv.FormatUint(id, 16), Frames: frames})
	if err != nil {
		return err
	}
	if _, err := d.f.Write(append(b, '\n')); err != nil {
		return err
	}
	d.seen[id] = true
	return nil
}

// Has reports whether id is recorded.
func (d *Dict) Has(id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[id]
}

// Close closes the file. Recorded stacks stay readable with Read.
func (d *Dict) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// Limits of a dictionary reader, so that a damaged or planted file cannot
// exhaust a reader's memory or time. Each is far beyond what a process
// writes: a line is one stack of at most a few dozen frames, a few KiB.
const (
	// MaxSize bounds what a reader reads of a dictionary file.
	MaxSize = 64 << 20
	// MaxLine bounds a line (one stack); a longer line is skipped
	// without being held in memory, and reported.
	MaxLine = 256 << 10
	// MaxStacks bounds the stacks a Index indexes.
	MaxStacks = 1 << 16
)

// ErrLine reports a line of a dictionary file that could not be read.
var ErrLine = errors.New("stackdict: unreadable dictionary line")

// Read reads a dictionary file. Lines it cannot read (an unfinished last
// line of a process that died while writing it, a line longer than
// MaxLine) are skipped and reported, joined, in the error, next to
// everything that could be read.
func Read(path string) (map[uint64][]record.Frame, error) {
	// O_NONBLOCK: a FIFO planted in place of the file must not hang the
	// reader; only regular files are read.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("stackdict: %s: not a regular file", path)
	}
	return Decode(f)
}

// Decode reads a dictionary from r, as Read does from a file: at
// most MaxSize bytes of it, lines of at most MaxLine bytes.
func Decode(r io.Reader) (map[uint64][]record.Frame, error) {
	out := make(map[uint64][]record.Frame)
	var errs []error
	br := bufio.NewReaderSize(io.LimitReader(r, MaxSize), 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		line, size, err := nextLine(br, MaxLine, &buf)
		switch {
		case line == nil && size > 0:
			errs = append(errs, fmt.Errorf("%w %d: %d bytes, more than the %d a stack takes", ErrLine, n, size, MaxLine))
		case len(bytes.TrimSpace(line)) > 0:
			id, frames, perr := decodeLine(line)
			if perr != nil {
				errs = append(errs, fmt.Errorf("%w %d: %q", ErrLine, n, shorten(line)))
			} else {
				out[id] = frames
			}
		}
		if err == io.EOF {
			return out, errors.Join(errs...)
		}
		if err != nil {
			return out, errors.Join(append(errs, err)...)
		}
	}
}

// MaxFrames bounds the frames of one stack a dictionary line is
// decoded into: lockreg records at most 32 frames (more with inlined
// calls). A line of empty objects would otherwise decode into 60 bytes of
// frame for each 3 bytes of text.
const MaxFrames = 1024

func decodeLine(line []byte) (uint64, []record.Frame, error) {
	if n := jsonbudget.Values(line); n > 2*MaxFrames+8 {
		return 0, nil, fmt.Errorf("%w: a stack of more than %d frames (%d JSON values)", ErrLine, MaxFrames, n)
	}
	var dl dictLine
	if err := json.Unmarshal(line, &dl); err != nil {
		return 0, nil, err
	}
	id, err := strconv.ParseUint(dl.ID, 16, 64)
	return id, dl.Frames, err
}

// nextLine returns the next line of br with its newline, or nil if it is
// longer than max bytes, and the line's length in bytes either way. A line too long is consumed without being
// held in memory. The line is valid until the next call; buf is scratch
// space the caller keeps between calls.
func nextLine(br *bufio.Reader, max int, buf *[]byte) (line []byte, n int64, err error) {
	chunk, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return chunk, int64(len(chunk)), err
	}
	b := append((*buf)[:0], chunk...)
	n = int64(len(chunk))
	for err == bufio.ErrBufferFull {
		chunk, err = br.ReadSlice('\n')
		n += int64(len(chunk))
		if b != nil && len(b)+len(chunk) <= max {
			b = append(b, chunk...)
		} else {
			if b != nil && cap(b) <= max {
				*buf = b
			}
			b = nil
		}
	}
	if b != nil {
		*buf = b
	}
	return b, n, err
}

// lineID reads the id of a dictionary line as Dict.Add writes it,
// {"id":"<hex>",..., from its first bytes only.
func lineID(line []byte) (uint64, bool) {
	const prefix = `{"id":"`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return 0, false
	}
	rest := line[len(prefix):]
	end := bytes.IndexByte(rest[:min(len(rest), 17)], '"')
	if end <= 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(string(rest[:end]), 16, 64)
	return id, err == nil
}

// A Index looks stacks up in a dictionary file without holding the
// file in memory: IndexOf reads it once and keeps each stack's place, and
// Lookup reads and decodes only the stacks asked for (once each). It is
// for readers of a run, who need a few stacks of a dictionary that may be
// large or hostile.
//
// A Index is not safe for concurrent use.
type Index struct {
	r     io.ReaderAt
	lines map[uint64]dictRef
	cache map[uint64][]record.Frame

	// Scanned is how many bytes IndexOf read; Decoded how many bytes of
	// lines Lookup read since.
	Scanned, Decoded int64
	// Skipped counts lines that were not indexed: longer than MaxLine,
	// without a readable id, past MaxStacks or past the byte limit.
	Skipped int
}

type dictRef struct {
	off int64
	n   int32
}

// IndexOf indexes the dictionary in r, reading at most limit bytes of it
// (and never more than MaxSize).
func IndexOf(r io.ReaderAt, limit int64) *Index {
	limit = max(min(limit, MaxSize), 0)
	x := &Index{r: r, lines: make(map[uint64]dictRef), cache: make(map[uint64][]record.Frame)}
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, limit), 64<<10)
	var buf []byte
	for {
		// Lines up to the buffer's size are read in place; a longer one
		// (rare: a deep stack) is gathered up to MaxLine.
		line, n, err := nextLine(br, MaxLine, &buf)
		if n > 0 {
			id, ok := lineID(line)
			switch {
			case !ok || n > MaxLine || len(x.lines) >= MaxStacks || (err != nil && line[len(line)-1] != '\n'):
				if len(bytes.TrimSpace(line)) > 0 || line == nil {
					x.Skipped++
				}
			default:
				x.lines[id] = dictRef{off: x.Scanned, n: int32(n)}
			}
		}
		x.Scanned += n
		if err != nil {
			return x
		}
	}
}

// Len returns how many stacks the index holds.
func (x *Index) Len() int { return len(x.lines) }

// Size returns how many bytes Lookup would read for id (0 if it is not
// indexed or already decoded), for a caller that budgets its reads.
func (x *Index) Size(id uint64) int64 {
	if _, ok := x.cache[id]; ok {
		return 0
	}
	return int64(x.lines[id].n)
}

// Lookup returns the frames recorded under id.
func (x *Index) Lookup(id uint64) ([]record.Frame, bool) {
	if fr, ok := x.cache[id]; ok {
		return fr, fr != nil
	}
	ref, ok := x.lines[id]
	if !ok {
		return nil, false
	}
	b := make([]byte, ref.n)
	x.Decoded += int64(ref.n)
	var frames []record.Frame
	if _, err := x.r.ReadAt(b, ref.off); err == nil {
		if got, fr, err := decodeLine(b); err == nil && got == id {
			frames = fr
		}
	}
	x.cache[id] = frames
	return frames, frames != nil
}

func shorten(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
