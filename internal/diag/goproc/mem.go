package goproc

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

var le = binary.LittleEndian

// A Piece is one range of the target's memory to read: Buf is filled from
// Addr, and OK says whether all of it could be read.
type Piece struct {
	Addr uint64
	Buf  []byte
	OK   bool
}

// Memory is a target's address space, read only.
type Memory interface {
	// ReadPieces reads each piece; a piece that cannot be read whole (an
	// unmapped address) is left !OK. The error is for the target as a
	// whole: it exited, or reading it is not permitted.
	ReadPieces(ps []Piece) error
}

// ErrExited is returned when the target exited (or exec'd another
// program) while it was read.
var ErrExited = errors.New("the process exited while it was read")

// ErrPermission is returned when the system refuses to let lockwatch read
// the target's memory; the error wrapping it says why and what to do.
var ErrPermission = errors.New("permission denied")

// liveMem reads a live process with process_vm_readv(2), which copies from
// the target without stopping it or touching its state.
type liveMem struct {
	pid   int
	calls int // system calls made, for the benchmarks
	bytes int
	// The vectors of a call, reused from call to call.
	local  []unix.Iovec
	remote []unix.RemoteIovec
}

// iovMax is the kernel's limit of pieces per process_vm_readv call.
const iovMax = 1024

func (m *liveMem) ReadPieces(ps []Piece) error {
	local, remote := m.local[:0], m.remote[:0]
	defer func() { m.local, m.remote = local[:0], remote[:0] }()
	for i := 0; i < len(ps); {
		// Empty pieces are done; the kernel would count them nowhere.
		if len(ps[i].Buf) == 0 {
			ps[i].OK = true
			i++
			continue
		}
		local, remote = local[:0], remote[:0]
		end := i
		for ; end < len(ps) && len(local) < iovMax; end++ {
			p := &ps[end]
			if len(p.Buf) == 0 {
				break
			}
			iv := unix.Iovec{Base: &p.Buf[0]}
			iv.SetLen(len(p.Buf))
			local = append(local, iv)
			remote = append(remote, unix.RemoteIovec{Base: uintptr(p.Addr), Len: len(p.Buf)})
		}
		n, err := unix.ProcessVMReadv(m.pid, local, remote, 0)
		m.calls++
		if err != nil {
			switch {
			case errors.Is(err, syscall.ESRCH):
				return ErrExited
			case errors.Is(err, syscall.EPERM):
				return ErrPermission
			}
			// EFAULT: the first piece is not mapped.
			n = 0
		}
		m.bytes += n
		// The kernel stops at the first piece it cannot read whole: those
		// before it are complete; it is not; the rest are tried again.
		j := i
		for ; j < end && n >= len(ps[j].Buf); j++ {
			ps[j].OK = true
			n -= len(ps[j].Buf)
		}
		if j < end {
			ps[j].OK = false
			j++
		}
		i = j
	}
	return nil
}

// reader reads typed values from a Memory within a budget of bytes.
type reader struct {
	mem    Memory
	budget int64 // bytes left to read
	err    error // the first error of the target as a whole
	near   *nearScratch
}

// nearScratch is the memory piecesNear reuses from call to call.
type nearScratch struct {
	order []int
	runs  []gRun
	slab  []byte
	rp    []Piece
}

// errBudget is returned when a read would exceed Options.MaxBytes.
var errBudget = errors.New("read budget exhausted")

func (r *reader) pieces(ps []Piece) error {
	if r.err != nil {
		return r.err
	}
	var n int64
	for _, p := range ps {
		n += int64(len(p.Buf))
	}
	if n > r.budget {
		r.err = fmt.Errorf("%w: the target asks for more than the %d bytes left (Options.MaxBytes)", errBudget, r.budget)
		return r.err
	}
	r.budget -= n
	if err := r.mem.ReadPieces(ps); err != nil {
		r.err = err
		return err
	}
	return nil
}

// bytes reads n bytes at addr; ok is false if they are not all mapped.
func (r *reader) bytes(addr uint64, n int) ([]byte, bool) {
	ps := []Piece{{Addr: addr, Buf: make([]byte, n)}}
	if r.pieces(ps) != nil {
		return nil, false
	}
	return ps[0].Buf, ps[0].OK
}

func (r *reader) u64(addr uint64) (uint64, bool) {
	b, ok := r.bytes(addr, 8)
	if !ok {
		return 0, false
	}
	return le.Uint64(b), true
}

// piecesNear reads ps as readGs reads g's: pieces close together in
// memory (most objects of one size class are) are copied as one run, at
// most runGap bytes apart and runMax bytes in all, and the pieces of a
// run not mapped whole are read again one by one.
func (r *reader) piecesNear(ps []Piece) error {
	sc := r.near
	if sc == nil {
		sc = &nearScratch{}
	}
	order := sc.order[:0]
	for i := range ps {
		if len(ps[i].Buf) == 0 {
			ps[i].OK = true
			continue
		}
		order = append(order, i)
	}
	slices.SortFunc(order, func(i, j int) int { return cmp.Compare(ps[i].Addr, ps[j].Addr) })
	sc.order = order
	runs := sc.runs[:0]
	var total uint64
	for k, i := range order {
		a := ps[i].Addr
		end := a + uint64(len(ps[i].Buf))
		if n := len(runs); n > 0 && end > a && a <= runs[n-1].end+runGap && end-runs[n-1].start <= runMax {
			runs[n-1].end = max(runs[n-1].end, end)
			runs[n-1].n++
			continue
		}
		if n := len(runs); n > 0 {
			total += runs[n-1].end - runs[n-1].start
		}
		runs = append(runs, gRun{start: a, end: end, first: k, n: 1})
	}
	if n := len(runs); n > 0 {
		total += runs[n-1].end - runs[n-1].start
	}
	sc.runs = runs
	slab := grow(sc.slab, int(total))
	rp := grow(sc.rp, len(runs))
	sc.slab, sc.rp = slab, rp
	for k, run := range runs {
		n := run.end - run.start
		rp[k] = Piece{Addr: run.start, Buf: slab[:n:n]}
		slab = slab[n:]
	}
	if err := r.pieces(rp); err != nil {
		return err
	}
	var alone []Piece
	var who []int
	for k, run := range runs {
		for _, i := range order[run.first : run.first+run.n] {
			if rp[k].OK {
				copy(ps[i].Buf, rp[k].Buf[ps[i].Addr-run.start:])
				ps[i].OK = true
				continue
			}
			alone = append(alone, Piece{Addr: ps[i].Addr, Buf: ps[i].Buf})
			who = append(who, i)
		}
	}
	if len(alone) == 0 {
		return nil
	}
	if err := r.pieces(alone); err != nil {
		return err
	}
	for j, i := range who {
		ps[i].OK = alone[j].OK
	}
	return nil
}
