package goproc

import (
	"debug/elf"
	"fmt"
	"strconv"
	"strings"
)

// hchanTimer is the offset of runtime.hchan's timer field (the timer that
// feeds a time.After, time.NewTimer or time.Tick channel), from Go 1.23
// (when the field came) on 64-bit targets; TestHchanTimerOffset checks it
// against this runtime's DWARF.
const hchanTimer = 32

// TimerChans reports which of the channels chans (runtime.hchan addresses,
// as in Goroutine.Chans) a timer feeds: a goroutine blocked on one of them
// wakes by itself when the timer fires. The answer is one read of each
// channel's timer field; it fails (so that a caller assumes nothing) for a
// release before Go 1.23 or a 32-bit target, or when a channel cannot be
// read.
func (p *Process) TimerChans(chans []uint64) (map[uint64]bool, error) {
	if p.Binary.f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("goproc: pid %d: timer channels are read on 64-bit targets only", p.PID)
	}
	if !atLeastGo123(p.Binary.GoVersion) {
		return nil, fmt.Errorf("goproc: pid %d: %s: channels name their timer from Go 1.23 on", p.PID, p.Binary.GoVersion)
	}
	ps := make([]Piece, len(chans))
	buf := make([]byte, 8*len(chans))
	for i, c := range chans {
		ps[i] = Piece{Addr: c + hchanTimer, Buf: buf[8*i : 8*i+8]}
	}
	if err := p.mem.ReadPieces(ps); err != nil {
		return nil, fmt.Errorf("goproc: pid %d: reading channels: %w", p.PID, err)
	}
	out := make(map[uint64]bool, len(chans))
	for i, c := range chans {
		if !ps[i].OK {
			return nil, fmt.Errorf("goproc: pid %d: channel %#x cannot be read", p.PID, c)
		}
		out[c] = le.Uint64(ps[i].Buf) != 0
	}
	return out, nil
}

// atLeastGo123 reports whether version ("go1.26.8") is Go 1.23 or later.
func atLeastGo123(version string) bool {
	r := strings.TrimPrefix(release(version), "go1.")
	minor, err := strconv.Atoi(r)
	return err == nil && strings.HasPrefix(version, "go1.") && minor >= 23
}
