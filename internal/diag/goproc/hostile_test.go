package goproc

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"testing"
)

// hostileMem is an address space full of plausible garbage: every word is
// a pointer into itself or a small number, derived from its address and a
// seed, except allglen and allgptr, which say there are n goroutines.
type hostileMem struct {
	seed         maphash.Seed
	variant      uint64
	lenAt, ptrAt uint64
	n            uint64
}

const hostileBase = 0xc000000000

func (m *hostileMem) word(a uint64) uint64 {
	switch a {
	case m.lenAt:
		return m.n
	case m.ptrAt:
		return hostileBase
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], a)
	binary.LittleEndian.PutUint64(b[8:], m.variant)
	h := maphash.Bytes(m.seed, b[:])
	switch h % 4 {
	case 0:
		return hostileBase + (h>>8)%(1<<24)&^7 // a pointer into the heap
	case 1:
		return h % 16 // a status, a small count
	case 2:
		return 0
	}
	return h
}

func (m *hostileMem) ReadPieces(ps []Piece) error {
	for i := range ps {
		p := &ps[i]
		for j := 0; j < len(p.Buf); j += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], m.word((p.Addr+uint64(j))&^7))
			copy(p.Buf[j:], w[:])
		}
		p.OK = p.Addr >= hostileBase || p.Addr < 1<<32
	}
	return nil
}

// TestHostileMemory reads images of garbage with a real binary: each read
// (Read, Count) ends, without a panic, within its byte budget, with an
// image or an error.
func TestHostileMemory(t *testing.T) {
	b, err := OpenBinary(buildTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seed := maphash.MakeSeed()
	for v := range uint64(8) {
		m := &hostileMem{seed: seed, variant: v, lenAt: b.syms["runtime.allglen"].Value, ptrAt: b.syms["runtime.allgptr"].Value, n: 50 + v*100}
		opts := Options{MaxBytes: 64 << 20, MaxStack: 64 << 10}.withDefaults()
		p := &Process{PID: 1, Binary: b, mem: m, opts: opts}
		// Twice: the second confirms against the first's copies.
		for range 2 {
			img, err := p.Read(context.Background())
			switch {
			case err != nil:
				t.Logf("variant %d: %v", v, err)
			default:
				t.Logf("variant %d: %d goroutines, %d locks, %d inconsistent", v, len(img.Goroutines), len(img.Locks), img.Inconsistent)
			}
		}
		if c, err := p.Count(context.Background()); err != nil {
			t.Logf("variant %d: count: %v", v, err)
		} else {
			t.Logf("variant %d: count: %+v", v, c)
		}
	}
}
