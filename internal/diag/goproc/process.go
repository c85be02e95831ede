package goproc

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options bound what a read may cost. The zero value gives the defaults.
type Options struct {
	// MaxGoroutines bounds allgs (default 1<<22): a larger count is read as
	// a corrupted image.
	MaxGoroutines int
	// MaxStack bounds the bytes of one goroutine's stack that are read
	// (default 256 KiB): deeper frames are left out, and the goroutine says
	// so.
	MaxStack int
	// MaxBytes bounds the bytes one Read copies from the target (default
	// 2 GiB); past it, Read fails.
	MaxBytes int64
	// MaxFrames bounds the frames of one goroutine (default 512).
	MaxFrames int
	// Retries is how many times a goroutine that changed while it was read
	// is read again before it is left out (default 4).
	Retries int
	// Exe is the binary to read the target with; default its
	// /proc/PID/exe (the binary it runs, even when deleted or replaced on
	// disk). Required for a core file whose binary is not where the core
	// says.
	Exe string
	// Quick is for a quick look at many processes (lockwatch ps): the
	// runtime's layout comes from the table of known releases when the
	// binary's release is in it, rather than from its DWARF (which costs
	// tens to hundreds of milliseconds to read in a large binary); of the
	// symbol table, only the runtime's symbols are read, a chunk at a time
	// (no global lock is named), and a binary whose .gopclntab is larger
	// than quickPclntabMax (64 MiB) is not read (Attach says so).
	Quick bool
	// NoStacks reads the goroutines and their waits without their stacks
	// (no frames, no inferred holders): a quick count (lockwatch ps).
	NoStacks bool
	// NoChans leaves out the channels that goroutines blocked on channels
	// wait for (Goroutine.Chans): their wait reasons still say they are.
	NoChans bool
	// Binary, when not nil, is the binary to read the target with instead
	// of opening Exe: one another Process read, of the same executable
	// file (the caller proved it so, by its device, inode, size and
	// mtime), so that processes of one executable share its symbols. The
	// Process's Close leaves it open. Binary is not safe for concurrent
	// use: the Processes sharing it are read one at a time.
	Binary *Binary
}

func (o Options) withDefaults() Options {
	if o.MaxGoroutines <= 0 {
		o.MaxGoroutines = 1 << 22
	}
	if o.MaxStack <= 0 {
		o.MaxStack = 256 << 10
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 2 << 30
	}
	if o.MaxFrames <= 0 {
		o.MaxFrames = 512
	}
	if o.Retries <= 0 {
		o.Retries = 4
	}
	return o
}

// A Process is a Go program to read: a live process or a core file. It is
// not safe for concurrent use.
type Process struct {
	PID    int
	Binary *Binary
	// Core is the core file's path; "" for a live process.
	Core string

	mem  Memory
	live *liveMem
	bias uint64 // load address minus file address (PIE)
	opts Options
	// start is the process's start time (/proc/PID/stat field 22), to
	// tell an exec or a reused pid.
	start uint64
	// coreTime is when the core was written (its file's mtime).
	coreTime time.Time

	closer func() error

	// Caches of what the binary says, shared by every read (unwind.go).
	pcs      map[uint64]*pcInfo
	defers   map[uint64]*openDefers
	creators map[uint64]*Frame // shared, never modified
	scratch  []Frame           // unwind's buffer
	// stacks are the distinct stacks unwound (intern), by their pcs.
	stacks map[string][]Frame
	pcKey  []byte

	// What the next Read confirms goroutines by (confirm.go), and the
	// memory the reads of g's reuse (image.go).
	last   *lastImage
	seed   maphash.Seed
	seeded bool
	gs     [2]gScratch
	chans  chanScratch
	near   nearScratch
}

// Attach opens the live process pid for reading. It fails with a one-line
// error when the process is not Go, its release is unknown, or reading its
// memory is not permitted (the error says which, and what to do).
func Attach(pid int, opts Options) (*Process, error) {
	opts = opts.withDefaults()
	exe := opts.Exe
	if exe == "" {
		exe = fmt.Sprintf("/proc/%d/exe", pid)
	}
	start, comm, err := procStat(pid)
	if err != nil {
		return nil, err
	}
	b, closer := opts.Binary, func() error { return nil } // a Binary given stays open
	if b == nil {
		b, err = openBinaryWith(exe, opts.Quick)
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, permissionError(pid, comm)
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d", pid)); serr != nil {
				return nil, fmt.Errorf("pid %d: %w", pid, ErrExited)
			}
			return nil, fmt.Errorf("pid %d (%s): its executable cannot be opened (a kernel thread, or a zombie): not a Go program to read", pid, comm)
		}
		if errors.Is(err, ErrNotGo) {
			return nil, fmt.Errorf("pid %d (%s) is not a Go program: %w", pid, comm, ErrNotGo)
		}
		return nil, fmt.Errorf("pid %d (%s): %w", pid, comm, err)
	}
	if opts.Binary == nil {
		closer = b.Close
	}
	p := &Process{PID: pid, Binary: b, live: &liveMem{pid: pid}, opts: opts, start: start, closer: closer}
	p.mem = p.live
	if err := p.findBias(); err != nil {
		closer()
		return nil, err
	}
	// One read proves the permission now, with its one-line reason.
	r := &reader{mem: p.mem, budget: 1 << 20}
	if _, ok := r.bytes(b.text.Addr+p.bias, 8); !ok || r.err != nil {
		closer()
		switch {
		case errors.Is(r.err, ErrPermission):
			return nil, permissionError(pid, comm)
		case errors.Is(r.err, ErrExited):
			return nil, fmt.Errorf("pid %d: %w", pid, ErrExited)
		}
		return nil, fmt.Errorf("pid %d (%s): its text is not mapped where its binary says: the binary given does not match the process", pid, comm)
	}
	return p, nil
}

// permissionError says why the kernel refused, and what to do.
func permissionError(pid int, comm string) error {
	why := "reading another process's memory is ptrace-level access"
	do := "run lockwatch as the same user, or as root (CAP_SYS_PTRACE)"
	if uid, err := ownerOf(pid); err == nil && uid != os.Getuid() && os.Geteuid() != 0 {
		why = fmt.Sprintf("it belongs to uid %d, not to you (uid %d)", uid, os.Getuid())
	} else if dumpable, err := isDumpable(pid); err == nil && !dumpable {
		why = "it is not dumpable (it changed its credentials, or called prctl(PR_SET_DUMPABLE, 0))"
		do = "run lockwatch as root (CAP_SYS_PTRACE)"
	} else if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
		switch strings.TrimSpace(string(b)) {
		case "1":
			why = "Yama's ptrace_scope is 1: only a parent may read a process's memory"
			do = "run it under 'lockwatch run', run lockwatch as root, or set kernel.yama.ptrace_scope=0 (sysctl)"
		case "2":
			why = "Yama's ptrace_scope is 2: only root may read another process's memory"
			do = "run lockwatch as root (CAP_SYS_PTRACE)"
		case "3":
			why = "Yama's ptrace_scope is 3: no process may read another's memory until reboot"
			do = "use a probe instead (import github.com/lockwatch/lockwatch/probe), or a core file ('gcore', GOTRACEBACK=crash)"
		}
	}
	return fmt.Errorf("pid %d (%s): cannot read its memory: %w: %s; %s", pid, comm, ErrPermission, why, do)
}

func ownerOf(pid int) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil {
		return 0, err
	}
	return int(st.Uid), nil
}

// isDumpable reads whether the process's memory may be read by its owner:
// the kernel shows a non-dumpable process's /proc files as root's.
func isDumpable(pid int) (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/mem", pid), &st); err != nil {
		return false, err
	}
	owner, err := ownerOf(pid)
	if err != nil {
		return false, err
	}
	return int(st.Uid) == owner, nil
}

// procStat reads a process's start time and command name.
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, "", fmt.Errorf("no process has pid %d", pid)
		}
		return 0, "", fmt.Errorf("pid %d: %v", pid, err)
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return 0, "", fmt.Errorf("pid %d: unreadable /proc/%d/stat", pid, pid)
	}
	comm := s[i+1 : j]
	f := strings.Fields(s[j+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("pid %d: unreadable /proc/%d/stat", pid, pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, comm, fmt.Errorf("pid %d (%s) has exited (a zombie): nothing to read", pid, comm)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, comm, err
}

// findBias finds where a PIE binary was loaded, from the process's
// auxiliary vector (AT_ENTRY, the entry point's run-time address).
func (p *Process) findBias() error {
	if !p.Binary.PIE {
		return nil
	}
	auxv, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", p.PID))
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			_, comm, _ := procStat(p.PID)
			return permissionError(p.PID, comm)
		}
		return fmt.Errorf("pid %d: %v", p.PID, err)
	}
	entry, ok := auxEntry(auxv)
	if !ok {
		return fmt.Errorf("pid %d: its auxiliary vector has no AT_ENTRY: cannot place its PIE binary", p.PID)
	}
	p.bias = entry - p.Binary.f.Entry
	return nil
}

func auxEntry(auxv []byte) (uint64, bool) {
	for i := 0; i+16 <= len(auxv); i += 16 {
		if le.Uint64(auxv[i:]) == atEntry {
			return le.Uint64(auxv[i+8:]), true
		}
	}
	return 0, false
}

// Close releases the process's files; the target is not affected.
func (p *Process) Close() error {
	if p.closer != nil {
		return p.closer()
	}
	return nil
}

// Stats are what reading cost: system calls and bytes copied.
type Stats struct {
	Calls int
	Bytes int
}

// Stats returns what the reads so far cost.
func (p *Process) Stats() Stats {
	if p.live == nil {
		return Stats{}
	}
	return Stats{Calls: p.live.calls, Bytes: p.live.bytes}
}

// checkSame fails when the live process exited, or its pid now names
// another process (an exec or a reuse), since it was attached.
func (p *Process) checkSame() error {
	if p.live == nil {
		return nil // a core file, or a test's memory
	}
	start, _, err := procStat(p.PID)
	if err != nil || start != p.start {
		return fmt.Errorf("pid %d: %w", p.PID, ErrExited)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil && p.opts.Exe == "" {
		if st, err := os.Stat(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil {
			var mine syscall.Stat_t
			var theirs = st.Sys().(*syscall.Stat_t)
			if err := syscall.Fstat(int(p.Binary.file.Fd()), &mine); err == nil && (mine.Ino != theirs.Ino || mine.Dev != theirs.Dev) {
				return fmt.Errorf("pid %d exec'd another program (%s) while it was read: %w", p.PID, exe, ErrExited)
			}
		}
	}
	return nil
}

// Read reads the goroutines and the sync waits of the target. A live
// target keeps running; the Image is consistent per goroutine (see the
// package comment), not a stop-the-world snapshot.
func (p *Process) Read(ctx context.Context) (*Image, error) {
	var img *Image
	err := p.reading(func(r *reader) (err error) {
		img, err = p.read(ctx, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// monoNow is the monotonic clock the runtime's nanotime reads.
func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// scanData scans data sections of the target for the first 8-aligned
// window of width words for which match returns true, in chunks, within
// the budget. The words are decoded once per chunk (match sees each word
// as a number, not 8 bytes to decode per window).
func (p *Process) scanData(r *reader, names []string, width int, pre filter, match func(addr uint64, w []uint64) bool) (uint64, bool) {
	const chunk = 64 << 10
	words := make([]uint64, (chunk+8*width)/8)
	for _, name := range names {
		s := p.Binary.f.Section(name)
		if s == nil || s.Size == 0 || s.Size > 256<<20 {
			continue
		}
		start := s.Addr + p.bias
		for off := uint64(0); off < s.Size; off += chunk {
			n := min(chunk+8*uint64(width), s.Size-off)
			b, ok := r.bytes(start+off, int(n))
			if r.err != nil {
				return 0, false
			}
			if !ok {
				continue // a hole (a core leaves pages out)
			}
			w := words[:len(b)/8]
			decodeWords(w, b)
			for i := pre.next(w, width, 0); i >= 0; i = pre.next(w, width, i+1) {
				if match(start+off+uint64(8*i), w[i:i+width]) {
					return start + off + uint64(8*i), true
				}
			}
		}
	}
	return 0, false
}

// decodeWords decodes b's little-endian words into w. Not instrumented by
// the race detector: it reads only what this goroutine has just read into
// b, and instrumented it cost ps seconds per stripped binary under -race.
//
//go:norace
func decodeWords(w []uint64, b []byte) {
	for i := range w {
		w[i] = le.Uint64(b[8*i:])
	}
}

// A filter picks the windows of a scan worth a match: first word equal to
// First when it is not 0; with Slice, the first three words a plausible
// slice header (a pointer, 0 < len <= cap <= MaxCap).
type filter struct {
	First  uint64
	Slice  bool
	MaxCap uint64
}

// next is the index of the first window from i on that f lets through, -1
// if none. Not instrumented by the race detector (see decodeWords): it
// looks at every word of the data sections.
//
//go:norace
func (f filter) next(w []uint64, width, i int) int {
	for ; i+width <= len(w); i++ {
		if f.First != 0 && w[i] != f.First {
			continue
		}
		if f.Slice && (width < 3 || w[i] == 0 || w[i]%8 != 0 || w[i+1] == 0 || w[i+1] > w[i+2] || w[i+2] > f.MaxCap) {
			continue
		}
		return i
	}
	return -1
}

var _ = bufio.NewReader
var _ = bytes.Equal
var _ = elf.EM_X86_64

// atEntry is AT_ENTRY, the auxiliary vector's entry point.
const atEntry = 9

// Start is the process's start time (/proc/PID/stat field 22, clock ticks
// after boot): with the pid, its identity.
func (p *Process) Start() uint64 { return p.start }
