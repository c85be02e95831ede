package stackdump

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
	ID     string  `json:"id"` // hex, so that JSON readers do not round it
	Frames []Frame `json:"frames"`
}

// CreateDict opens the dictionary file at path for appending, creating it
// with mode 0600. A symbolic link at path is refused.
func CreateDict(path string) (*Dict, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	d := &Dict{f: f, seen: make(map[uint64]bool)}
	// Reopening an existing dictionary (the same process, twice) must not
	// write its stacks again. Unreadable lines are reported by ReadDict to
	// whoever reads the file; here they only mean those stacks are not seen.
	old, _ := ReadDict(path)
	for id := range old {
		d.seen[id] = true
	}
	// An unfinished last line (a writer died mid-way) must not swallow the
	// next line: end it.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 && !endsInNewline(path, fi.Size()) {
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return nil, err
		}
	}
	return d, nil
}

// Add records frames under id unless id is already recorded. It returns once
// the line is written to the file.
func (d *Dict) Add(id uint64, frames []Frame) error {
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

// Close closes the file. Recorded stacks stay readable with ReadDict.
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

// MaxDictSize bounds what a reader reads of a dictionary file: far beyond
// what a process writes (a 32-frame stack is a few KiB a line), so that a
// damaged or planted file cannot exhaust a reader's memory.
const MaxDictSize = 64 << 20

// ErrDictLine reports a line of a dictionary file that could not be read.
var ErrDictLine = errors.New("stackdump: unreadable dictionary line")

// ReadDict reads a dictionary file. Lines it cannot read (an unfinished last
// line of a process that died while writing it) are skipped and reported,
// joined, in the error, next to everything that could be read.
func ReadDict(path string) (map[uint64][]Frame, error) {
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
		return nil, fmt.Errorf("stackdump: %s: not a regular file", path)
	}
	return DecodeDict(f)
}

// DecodeDict reads a dictionary from r, as ReadDict does from a file.
func DecodeDict(r io.Reader) (map[uint64][]Frame, error) {
	out := make(map[uint64][]Frame)
	var errs []error
	br := bufio.NewReader(io.LimitReader(r, MaxDictSize))
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var dl dictLine
			id, perr := uint64(0), json.Unmarshal(line, &dl)
			if perr == nil {
				id, perr = strconv.ParseUint(dl.ID, 16, 64)
			}
			if perr != nil {
				errs = append(errs, fmt.Errorf("%w %d: %q", ErrDictLine, n, shorten(line)))
			} else {
				out[id] = dl.Frames
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

func endsInNewline(path string, size int64) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return true // nothing to repair that can be seen
	}
	defer f.Close()
	var b [1]byte
	_, err = f.ReadAt(b[:], size-1)
	return err != nil || b[0] == '\n'
}

func shorten(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
