package inproc

// Reader records. RLock claims a slot of the reader table (CAS of its key
// from 0 to the lock's address), starting at a slot chosen by hashing the
// lock's address and the goroutine's id, so that two goroutines reading one
// RWMutex write different cache lines; RUnlock finds it again from the same
// hash and frees it by a CAS, so that a read lock released by another
// goroutine than its taker (allowed, as with sync), which frees some record
// of the lock, never frees one twice. A reader that finds no free slot in
// readProbes tries is counted in its lock instead (the RWMutex's over).

type readSlot struct {
	key        uint64
	begin, end uint32
	goid       int64
	pc, pc2    uintptr
	_          [24]byte // a 64-byte line
}

func readHash(addr uintptr, goid int64) uint64 {
	return mix(uint64(addr)*0x9e3779b97f4a7c15 ^ uint64(goid))
}

// ReadLocked records goroutine goid as a reader of the lock at addr; it
// returns false if no slot was free (the caller counts the reader).
//
//go:norace
func ReadLocked(addr uintptr, goid int64, pc, pc2 uintptr) bool {
	a := ar
	h := readHash(addr, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &a.readers[(h+p)&(readSlots-1)]
		if r.key != 0 || !cas64(&r.key, 0, uint64(addr)) {
			continue
		}
		v := r.end + 1
		r.begin = v
		storeBarrier()
		r.goid = goid
		r.pc, r.pc2 = pc, pc2
		storeBarrier()
		r.end = v
		return true
	}
	return false
}

// ReadUnlocked frees a reader record of the lock at addr: goroutine goid's
// if it has one, else (over > 0) none, for a count the caller decrements,
// else any of the lock's. It returns the goroutine whose read lock it
// released (0 if it freed none) and whether it took one of the counted.
//
//go:norace
func ReadUnlocked(addr uintptr, goid int64, over int32) (g int64, counted bool) {
	a := ar
	h := readHash(addr, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &a.readers[(h+p)&(readSlots-1)]
		if r.key == uint64(addr) && r.goid == goid && freeRead(r, addr) {
			return goid, false
		}
	}
	if over > 0 {
		return goid, true
	}
	for i := range a.readers {
		r := &a.readers[i]
		if r.key == uint64(addr) {
			if g := r.goid; g != 0 && freeRead(r, addr) {
				return g, false
			}
		}
	}
	// No record: the RUnlock that follows is of an unlocked RWMutex, and
	// sync makes it fatal.
	return 0, false
}

// freeRead takes r from the lock at addr (a CAS of its begin counter to
// odd: only one releaser wins), clears it and frees it.
//
//go:norace
func freeRead(r *readSlot, addr uintptr) bool {
	e := r.end
	if r.begin != e || r.key != uint64(addr) {
		return false
	}
	// begin and end share a word: CAS both, from (e, e) to (e+1, e).
	w := (*uint64)(ptrOf(&r.begin))
	if !cas64(w, uint64(e)|uint64(e)<<32, uint64(e+1)|uint64(e)<<32) {
		return false
	}
	storeBarrier()
	r.goid = 0
	storeBarrier()
	r.end = e + 1
	storeBarrier()
	r.key = 0
	return true
}

type readCopy struct {
	key     uint64
	goid    int64
	pc, pc2 uintptr
}

//go:norace
func (r *readSlot) read(tries int) (c readCopy, ok bool) {
	for try := 0; try < tries; try++ {
		e := r.end
		loadBarrier()
		key := r.key
		if key == 0 {
			return c, false
		}
		c = readCopy{key: key, goid: r.goid, pc: r.pc, pc2: r.pc2}
		loadBarrier()
		if r.begin == e && r.key == key {
			return c, c.goid != 0
		}
	}
	return c, false
}

// AddOver adds d to an RWMutex's count of readers without a record, unseen
// by the race detector.
//
//go:norace
func AddOver(p *int32, d int32) {
	for {
		old := *p
		if cas32((*uint32)(ptrOf(p)), uint32(old), uint32(old+d)) {
			return
		}
	}
}
