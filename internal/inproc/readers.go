package inproc

import (
	"sync/atomic"

	"github.com/lockwatch/lockwatch/internal/record"
)

// Reader records. RLock claims a slot of a global table (CAS of its key from
// 0 to the lock's id), starting at a slot chosen by hashing the lock's and
// the goroutine's ids, so that two goroutines reading one RWMutex write
// different cache lines; RUnlock finds it again from the same hash. A
// reader that finds no free slot in readProbes tries is counted in its
// lock's State.over instead. A read lock released by another goroutine than
// the one that took it (allowed, as with sync) releases a slot of the lock
// found by a scan, or the count.
const (
	readSlots  = 4096 // a power of two
	readProbes = 8
)

type readSlot struct {
	key        atomic.Uint64
	begin, end atomic.Uint32
	goid       atomic.Int64
	pc, pc2    atomic.Uintptr
	since      atomic.Int64
	_          [16]byte // a 64-byte line
}

var readers [readSlots]readSlot

func readHash(id uint64, goid int64) uint64 { return mix(id*0x9e3779b97f4a7c15 ^ uint64(goid)) }

// ReadLocked records a reader of the lock of s (registered, id).
func ReadLocked(s *State, id uint64, goid int64, pc, pc2 uintptr, since int64) {
	h := readHash(id, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &readers[(h+p)&(readSlots-1)]
		if r.key.Load() != 0 || !r.key.CompareAndSwap(0, id) {
			continue
		}
		v := r.end.Load() + 1
		record.Store32(&r.begin, v)
		record.StoreI64(&r.goid, goid)
		record.StoreUintptr(&r.pc, pc)
		record.StoreUintptr(&r.pc2, pc2)
		record.StoreI64(&r.since, since)
		record.Store32(&r.end, v)
		return
	}
	s.over.Add(1)
}

// ReadUnlocked removes a reader record of the lock of s: goroutine goid's
// if it has one, else one of the uncounted, else any of the lock's. It
// returns the goroutine whose read lock it released: goid, or the
// goroutine of the record it released for goid (0 if none).
func ReadUnlocked(s *State, id uint64, goid int64) int64 {
	h := readHash(id, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &readers[(h+p)&(readSlots-1)]
		if r.key.Load() == id && r.goid.Load() == goid {
			releaseRead(r)
			return goid
		}
	}
	for {
		n := s.over.Load()
		if n <= 0 {
			break
		}
		if s.over.CompareAndSwap(n, n-1) {
			return goid
		}
	}
	for i := range readers {
		r := &readers[i]
		if r.key.Load() == id {
			g := r.goid.Load()
			releaseRead(r)
			return g
		}
	}
	// No record: the RUnlock that follows is of an unlocked RWMutex, and
	// sync makes it fatal.
	return 0
}

func releaseRead(r *readSlot) {
	v := r.end.Load() + 1
	record.Store32(&r.begin, v)
	record.StoreI64(&r.goid, 0)
	record.Store32(&r.end, v)
	record.Store64(&r.key, 0)
}

type readCopy struct {
	key     uint64
	goid    int64
	pc, pc2 uintptr
	since   int64
}

func (r *readSlot) read(tries int) (c readCopy, ok bool) {
	for try := 0; try < tries; try++ {
		e := r.end.Load()
		key := r.key.Load()
		if key == 0 {
			return c, false
		}
		c = readCopy{key: key, goid: r.goid.Load(), pc: r.pc.Load(), pc2: r.pc2.Load(), since: r.since.Load()}
		if r.begin.Load() == e && r.key.Load() == key {
			return c, c.goid != 0
		}
	}
	return c, false
}
