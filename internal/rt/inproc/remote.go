package inproc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// A Remote is the arena of another process (arena_linux.go), mapped
// read-only: its records are read as the process writes them, with the
// same seqlock protocol as in-process, so nothing of it is stopped or
// asked.
type Remote struct {
	PID   int
	Start uint64 // the process's start time, as /proc/PID/stat's field 22
	// Mono0 and Wall0 are a pair of clock readings the process took
	// together: a record's time t (its Nanotime, the system's monotonic
	// clock) was at wall time Wall0 + (t - Mono0) nanoseconds.
	Mono0, Wall0 int64
	a            *arenaT
	mem          []byte
}

// ErrNoArena says that a process has no drop-in arena: it does not import
// the drop-in sync (or is not a Go program, or could not make one).
var ErrNoArena = errors.New("no drop-in mutex records (the process does not use github.com/lockwatch/lockwatch/sync)")

// checkHeader validates an arena's header: its magic, version and every
// size, against this build's. A record laid out otherwise is refused,
// never misread.
func checkHeader(h *header) error {
	switch {
	case h.magic != arenaMagic:
		return fmt.Errorf("not a drop-in arena (bad magic %#x)", h.magic)
	case h.version != arenaVersion:
		return fmt.Errorf("drop-in arena version %d; this lockwatch reads version %d: use the lockwatch of the program's module version", h.version, arenaVersion)
	case h.size != uint64(ArenaSize) || h.nHolds != nHolds || h.nWait != waitSlots || h.nRead != readSlots ||
		h.nNames != nameSlots || h.maxFrames != maxFrames:
		return fmt.Errorf("drop-in arena of another layout (size %d, want %d)", h.size, ArenaSize)
	}
	return nil
}

// Take reads the process's held and awaited locks, as Take does in
// process. The PCs are the process's: symbolize them with its binary.
func (r *Remote) Take(max int) Snapshot { return r.a.take(max) }

// Close unmaps the arena.
func (r *Remote) Close() error { return unmapArena(r.mem) }

// statStart parses the start time, field 22, from a /proc/PID/stat line
// (the command, field 2, may hold spaces and parentheses: fields are
// counted after its last ')').
func statStart(b []byte) uint64 {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): field 22 is f[19].
	if len(f) < 20 {
		return 0
	}
	n, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func arenaOf(mem []byte) (*arenaT, error) {
	if uintptr(len(mem)) < ArenaSize {
		return nil, fmt.Errorf("drop-in arena of %d bytes; want %d", len(mem), ArenaSize)
	}
	a := (*arenaT)(unsafe.Pointer(&mem[0]))
	if err := checkHeader(&a.hdr); err != nil {
		return nil, err
	}
	return a, nil
}
