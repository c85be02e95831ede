package inproc

import (
	"runtime"
	"unicode/utf8"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// Names given with sync.SetName: a slot per named lock (CAS of its key from
// 0 to the lock's address, at a slot chosen by hashing it), with the name's
// bytes (at most NameMax). A cleanup (runtime.AddCleanup) frees the slot
// once the lock is collected, so that a lock later made at the same address
// has no name.

type nameSlot struct {
	key uint64
	seq seqlock.Seq32
	_   uint32
	n   uint32
	_   uint32
	b   [NameMax]byte
}

// SetName names the lock at p (kind). It allocates (the cleanup), the first
// time a lock is named.
func SetName(p unsafe.Pointer, kind Kind, name string) {
	for len(name) > NameMax {
		_, size := utf8.DecodeLastRuneInString(name[:NameMax])
		name = name[:NameMax-size]
	}
	if setName(uintptr(p), name) {
		runtime.AddCleanup((*byte)(p), forgetName, uintptr(p))
	}
}

// setName stores name in the slot of addr, claiming one if it has none; it
// reports whether it claimed one.
//
//go:norace
func setName(addr uintptr, name string) (claimed bool) {
	a := arena()
	h := mix(uint64(addr))
	var s *nameSlot
	for p := uint64(0); p < nameProbes && s == nil; p++ {
		t := &a.names[(h+p)&(nameSlots-1)]
		if t.key == uint64(addr) {
			s = t
		}
	}
	for p := uint64(0); p < nameProbes && s == nil; p++ {
		t := &a.names[(h+p)&(nameSlots-1)]
		if t.key == 0 && seqlock.CAS64(&t.key, 0, uint64(addr)) {
			s, claimed = t, true
		}
	}
	if s == nil {
		return false // the table is full here: the lock keeps its site
	}
	end := s.seq.Begin()
	// A loop, not copy: the runtime's copy tells the race detector.
	for i := 0; i < len(name); i++ {
		s.b[i] = name[i]
	}
	s.n = uint32(len(name))
	s.seq.End(end)
	return claimed
}

//go:norace
func forgetName(addr uintptr) {
	a := reading()
	h := mix(uint64(addr))
	for p := uint64(0); p < nameProbes; p++ {
		t := &a.names[(h+p)&(nameSlots-1)]
		if t.key == uint64(addr) {
			end := t.seq.Begin()
			t.n = 0
			t.seq.End(end)
			seqlock.StoreFence()
			t.key = 0
			return
		}
	}
}

// nameOf returns the name of the lock at addr, "" if none.
//
//go:norace
func (a *arenaT) nameOf(addr uintptr) string {
	h := mix(uint64(addr))
	for p := uint64(0); p < nameProbes; p++ {
		t := &a.names[(h+p)&(nameSlots-1)]
		if t.key != uint64(addr) {
			continue
		}
		var b [NameMax]byte
		n, key := 0, uint64(0)
		if _, ok := t.seq.Read(readTries, func() {
			key, n = t.key, min(int(t.n), NameMax)
			for i := 0; i < n; i++ {
				b[i] = t.b[i]
			}
		}); !ok || key != uint64(addr) {
			return ""
		}
		return string(b[:n])
	}
	return ""
}
