// Package forge writes records into a run's arena as a hostile or buggy
// member of the run could: through the file, at the offsets that
// docs/registry-format.md documents (format versions 1 to 5; forge writes no edges), with none of
// lockreg's checks. Tests
// and the reliability suite use it to prove that lockwatch never believes
// what a record says without proof, and to build corrupted arenas.
//
//	a, err := forge.Open(dir)
//	defer a.Close()
//	slot, err := a.AddProcess(victim, forge.Running) // names a process that is not the run's
package forge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/procid"
)

// Process-table states (docs/registry-format.md, process record).
const (
	Free    = 0
	Running = 1
	Exited  = 2
)

// Record sizes of format versions 1 to 5 (version 3 added the edge table,
// version 4 changed the event section and added the name index, version 5
// grew lock records to 192 bytes for the fencing counter; process records
// kept their fields, and the holder record its offsets).
const procSize = 64

// lockSize is the lock record's size in format version v.
func lockSize(v uint32) int64 {
	if v >= 5 {
		return 192
	}
	return 128
}

// An Arena is a run's arena file opened for writing. It is not safe for
// concurrent use.
type Arena struct {
	f                 *os.File
	version           uint32
	procOff, lockOff  int64
	maxProcs, maxLock uint32
	size              int64
}

// Open opens the arena of the run in dir for writing and reads its header.
func Open(dir string) (*Arena, error) {
	f, err := os.OpenFile(filepath.Join(dir, arena.ArenaFile), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	a := &Arena{f: f}
	var h [128]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("forge: header: %w", err)
	}
	if string(h[:8]) != "LOCKWREG" {
		f.Close()
		return nil, errors.New("forge: not an arena")
	}
	ne := binary.NativeEndian
	a.version = ne.Uint32(h[8:])
	if a.version < 1 || a.version > 5 {
		f.Close()
		return nil, fmt.Errorf("forge: format version %d; this package writes versions 1 to 5", a.version)
	}
	a.size = int64(ne.Uint64(h[16:]))
	a.maxProcs, a.procOff = ne.Uint32(h[24:]), int64(ne.Uint64(h[32:]))
	a.maxLock, a.lockOff = ne.Uint32(h[40:]), int64(ne.Uint64(h[48:]))
	return a, nil
}

// Close closes the file.
func (a *Arena) Close() error { return a.f.Close() }

// Size returns the arena's size as its header says.
func (a *Arena) Size() int64 { return a.size }

func (a *Arena) put32(off int64, v uint32) error {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	_, err := a.f.WriteAt(b[:], off)
	return err
}

func (a *Arena) put64(off int64, v uint64) error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], v)
	_, err := a.f.WriteAt(b[:], off)
	return err
}

func (a *Arena) get64(off int64) (uint64, error) {
	var b [8]byte
	_, err := a.f.ReadAt(b[:], off)
	return binary.NativeEndian.Uint64(b[:]), err
}

func (a *Arena) get32(off int64) (uint32, error) {
	var b [4]byte
	_, err := a.f.ReadAt(b[:], off)
	return binary.NativeEndian.Uint32(b[:]), err
}

// WriteAt writes raw bytes at off: the hostile-arena generator's tool.
func (a *Arena) WriteAt(b []byte, off int64) error {
	_, err := a.f.WriteAt(b, off)
	return err
}

// SetProcess writes process-table slot as its claimant would: in format 1,
// pid and start time, then state; in formats 2 to 5, a claim of the owner word
// (next generation, id's pid), then the fields under the slot's sequence
// counter, tagged with the owner value.
func (a *Arena) SetProcess(slot int, id procid.ID, state uint32) error {
	if slot < 0 || uint32(slot) >= a.maxProcs {
		return fmt.Errorf("forge: process slot %d out of range", slot)
	}
	off := a.procOff + int64(slot)*procSize
	if a.version == 1 {
		return errors.Join(a.put32(off+4, uint32(id.PID)), a.put64(off+16, id.Start), a.put32(off, state))
	}
	owner, err1 := a.get64(off + 40)
	seq, err2 := a.get32(off + 12)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	owner = (owner>>32+1)<<32 | uint64(uint32(id.PID))
	seq = (seq + 1) &^ 1
	return errors.Join(
		a.put64(off+40, owner),
		a.put32(off+12, seq+1),
		a.put32(off+4, uint32(id.PID)),
		a.put64(off+16, id.Start),
		a.put32(off, state),
		a.put64(off+48, owner),
		a.put32(off+12, seq+2),
	)
}

// AddProcess writes id into the first never-claimed process-table slot, as
// a process claiming a slot would, and returns the slot.
func (a *Arena) AddProcess(id procid.ID, state uint32) (int, error) {
	for i := uint32(0); i < a.maxProcs; i++ {
		off := a.procOff + int64(i)*procSize
		var claimed uint64
		var err error
		if a.version == 1 {
			var pid uint32
			pid, err = a.get32(off + 4)
			claimed = uint64(pid)
		} else {
			claimed, err = a.get64(off + 40)
		}
		if err != nil {
			return -1, err
		}
		if claimed == 0 {
			return int(i), a.SetProcess(int(i), id, state)
		}
	}
	return -1, errors.New("forge: the process table is full")
}

// SetHolder makes lock index hold id since now: the lock word becomes id's
// pid and the holder record names id (and process slot), written under the
// record's sequence counter so that readers take it whole.
func (a *Arena) SetHolder(lock int, id procid.ID, slot int) error {
	if lock < 0 || uint32(lock) >= a.maxLock {
		return fmt.Errorf("forge: lock %d out of range", lock)
	}
	off := a.lockOff + int64(lock)*lockSize(a.version)
	seq, err := a.get32(off + 16)
	if err != nil {
		return err
	}
	seq = (seq + 1) &^ 1
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return err
	}
	return errors.Join(
		a.put32(off+16, seq+1),
		a.put32(off+20, uint32(slot+1)),
		a.put32(off+24, uint32(id.PID)),
		a.put64(off+32, id.Start),
		a.put64(off+56, uint64(now.Nano())),
		a.put32(off, uint32(id.PID)),
		a.put32(off+16, seq+2),
	)
}
