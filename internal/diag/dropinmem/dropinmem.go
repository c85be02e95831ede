// Package dropinmem reads the drop-in mutexes of a process from outside:
// the records that github.com/lockwatch/lockwatch/sync keeps in a shared
// arena (a memfd, or a file of the run directory under `lockwatch run`),
// mapped read-only, and the process's binary to name their PCs. The process
// runs no probe, no goroutine and no socket for it: changing its import
// line is all it did.
//
// Ask has the signature of dropinsrc.Source.Ask, so a report reads a
// process's drop-in mutexes from its arena, and asks its probe only if it
// has none (a process whose drop-in predates the arena):
//
//	src := dropinsrc.New(dir, time.Second)
//	src.Ask = dropinmem.Ask
package dropinmem

import (
	"context"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// maxMutexes caps the mutexes of one view, as a probe's answer.
const maxMutexes = 10000

// View reads process id's drop-in mutexes from its arena (dir: its run
// directory, or ""). inproc.ErrNoArena if it has none.
func View(id procid.ID, dir string) (*probeclient.MutexView, error) {
	r, err := inproc.OpenRemote(id.PID, dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if id.Start != 0 && r.Start != 0 && r.Start != id.Start {
		return nil, fmt.Errorf("pid %d: its drop-in arena is of a process started at %d, not %d", id.PID, r.Start, id.Start)
	}
	sym, err := symbolizer(id.PID)
	if err != nil {
		return nil, err
	}
	s := r.Take(maxMutexes)
	wall := func(t int64) time.Time { return time.Unix(0, r.Wall0+(t-r.Mono0)) }
	return probeclient.ViewOf(s, id.PID, r.Start, wall, sym.frames), nil
}

// Ask reads process id's drop-in mutexes from its arena, or, if it has
// none, asks its probe (the run's control socket), within timeout.
func Ask(ctx context.Context, dir string, id procid.ID, timeout time.Duration) (*probeclient.MutexView, error) {
	v, err := View(id, dir)
	if !errors.Is(err, inproc.ErrNoArena) {
		return v, err
	}
	c := &probeclient.Client{Path: probeclient.SocketPath(dir, id), Timeout: timeout}
	return c.Mutexes(ctx)
}

// A symtab names the PCs of one binary, loaded at bias.
type symtab struct {
	t    *gosym.Table
	bias uint64
}

// symbolizer loads the Go symbol table of process pid's binary
// (/proc/PID/exe) and its load address (/proc/PID/maps, for a
// position-independent binary).
func symbolizer(pid int) (*symtab, error) {
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its binary: %w", pid, err)
	}
	defer f.Close()
	pcln := f.Section(".gopclntab")
	text := f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("pid %d: its binary has no Go symbol table (.gopclntab)", pid)
	}
	if pcln.Size > 1<<30 {
		return nil, fmt.Errorf("pid %d: its Go symbol table is %d bytes, more than lockwatch reads", pid, pcln.Size)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its Go symbol table: %w", pid, err)
	}
	t, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("pid %d: its Go symbol table: %w", pid, err)
	}
	s := &symtab{t: t}
	if f.Type == elf.ET_DYN {
		b, err := loadBias(pid, f)
		if err != nil {
			return nil, err
		}
		s.bias = b
	}
	return s, nil
}

// loadBias is where a position-independent binary was loaded: the start
// of its first mapping (offset 0) in /proc/PID/maps, less the address its
// first loadable segment asks for.
func loadBias(pid int, f *elf.File) (uint64, error) {
	var vaddr uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			vaddr = p.Vaddr &^ (p.Align - 1)
			break
		}
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[2] != "00000000" || strings.Join(f[5:], " ") != exe {
			continue
		}
		start, err := strconv.ParseUint(strings.SplitN(f[0], "-", 2)[0], 16, 64)
		if err != nil {
			continue
		}
		return start - vaddr, nil
	}
	return 0, fmt.Errorf("pid %d: its binary is not in /proc/%d/maps", pid, pid)
}

var mu sync.Mutex // gosym.Table is not safe for concurrent use

// frames symbolizes return addresses, as stackdump.FramesOf does in
// process (without the inlined calls: one frame per PC).
func (s *symtab) frames(pcs []uintptr) []stackdump.Frame {
	mu.Lock()
	defer mu.Unlock()
	out := make([]stackdump.Frame, 0, len(pcs))
	for _, pc := range pcs {
		if pc == 0 {
			continue
		}
		// A return address is the instruction after the call: its line is
		// the call's at pc-1.
		file, line, fn := s.t.PCToLine(uint64(pc) - s.bias - 1)
		if fn == nil {
			continue
		}
		out = append(out, stackdump.Frame{Func: fn.Name, File: file, Line: line})
	}
	return out
}
