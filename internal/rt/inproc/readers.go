package inproc

import "github.com/lockwatch/lockwatch/internal/rt/seqlock"

// Reader records. RLock claims a slot of the reader table (CAS of its key
// from 0 to the lock's address), starting at a slot chosen by hashing the
// lock's address and the goroutine's id, so that two goroutines reading one
// RWMutex write different cache lines; RUnlock finds it again from the same
// hash and frees it (freeRead), so that a read lock released by another
// goroutine than its taker (allowed, as with sync), which frees some record
// of the lock, never frees one twice. A reader that finds no free slot in
// readProbes tries is counted in its lock instead (the RWMutex's over).

type readSlot struct {
	key     uint64
	seq     seqlock.Seq32
	_       uint32
	goid    int64
	pc, pc2 uintptr
	_       [24]byte // a 64-byte line
}

func readHash(addr uintptr, goid int64) uint64 {
	return mix(uint64(addr)*0x9e3779b97f4a7c15 ^ uint64(goid))
}

// ReadLocked records goroutine goid as a reader of the lock at addr; it
// returns false if no slot was free (the caller counts the reader).
//
//go:norace
func ReadLocked(addr uintptr, goid int64, pc, pc2 uintptr) bool {
	a := arena()
	h := readHash(addr, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &a.readers[(h+p)&(readSlots-1)]
		if r.key != 0 || !seqlock.CAS64(&r.key, 0, uint64(addr)) {
			continue
		}
		end := r.seq.Begin()
		r.goid = goid
		r.pc, r.pc2 = pc, pc2
		r.seq.End(end)
		return true
	}
	return false
}

// ReadUnlocked frees a reader record of the lock at addr: goroutine goid's
// if it has one, else (over > 0) none, for a count the caller decrements,
// else any of the lock's. It returns the goroutine whose read lock it
// released (0 if it freed none) and whether it took one of the counted.
//
// held, when not -1, says that readers without a record or a count may
// hold the lock (read locks taken in the owner mode, before the records
// mode was switched on): it is the number of readers sync counts holding
// it, at least, read before the call; heldAfter reads it again. A release
// that finds no record of its own then frees another goroutine's record
// or count only if every reader sync counts has one (no more readers than
// records and counts); else it is taken as the release of a read lock
// without a record, and frees nothing. The choice: a goroutine releasing
// the read lock another took (sync allows it) while readers without a
// record still hold leaves that reader's record behind, a reader shown
// holding that no longer does; freeing instead would take the record of a
// reader that still holds, which is worse (a holder missed), and nothing
// tells the two releases apart. Readers locking or unlocking meanwhile
// mostly make sync's count exceed the records (sync counts a reader before
// its record is made and after it is freed), which errs the same way; but
// a reader that both locks and unlocks while the records are counted is
// in the records and in neither count, and then that one release may
// still free the record of a reader that holds.
//
//go:norace
func ReadUnlocked(addr uintptr, goid int64, over int32, held int32, heldAfter func() int32) (g int64, counted bool) {
	a := reading()
	h := readHash(addr, goid)
	for p := uint64(0); p < readProbes; p++ {
		r := &a.readers[(h+p)&(readSlots-1)]
		if r.key == uint64(addr) && r.goid == goid {
			if _, ok := freeRead(r, addr, goid); ok {
				return goid, false
			}
		}
	}
	if held >= 0 {
		n := int64(over)
		for i := range a.readers {
			if r := &a.readers[i]; r.key == uint64(addr) && r.goid != 0 {
				n++
			}
		}
		if int64(max(held, heldAfter())) > n {
			return 0, false // a reader without a record
		}
	}
	if over > 0 {
		return goid, true
	}
	for i := range a.readers {
		r := &a.readers[i]
		if r.key == uint64(addr) {
			if g, ok := freeRead(r, addr, 0); ok {
				return g, false
			}
		}
	}
	// No record: the RUnlock that follows is of an unlocked RWMutex, and
	// sync makes it fatal.
	return 0, false
}

// freeRead frees r if it is a live record of the lock at addr (of
// goroutine goid, or of any with goid 0) and returns its goroutine. Of
// several releasers of one record, exactly one frees it:
//   - The releaser copies the key and the goroutine under the sequence v
//     and claims the write with a CAS of the sequence from v: the CAS
//     succeeds only if no write began since v, so the copy is of the record
//     as it still is, live, and the claim excludes every other releaser.
//   - It empties the record (goroutine 0) and ends the write: a releaser
//     that comes after sees goroutine 0, a dead record, and frees nothing,
//     though the key still names the lock.
//   - It frees the key with a CAS from the lock's address to 0. Once the
//     claim succeeded nobody else writes the key (a reader claims only a key
//     of 0, and every other releaser now fails), so the CAS succeeds; it is
//     a CAS so that a free can never wipe a key it does not own.
//
// Checking the goroutine in the copy that the claim validates is what
// makes a record freed once: a releaser that had read the goroutine of
// the record before another freed it would otherwise claim it again between
// that free's end and its key store (TestFreeReadOnce).
//
//go:norace
func freeRead(r *readSlot, addr uintptr, goid int64) (int64, bool) {
	v := r.seq.Load()
	if v&1 != 0 {
		return 0, false
	}
	key, g := r.key, r.goid
	if key != uint64(addr) || g == 0 || (goid != 0 && g != goid) || !r.seq.Claim(v, v+1) {
		return 0, false
	}
	r.goid = 0
	r.seq.End(v + 2)
	seqlock.CAS64(&r.key, uint64(addr), 0)
	return g, true
}

type readCopy struct {
	key     uint64
	goid    int64
	pc, pc2 uintptr
}

//go:norace
func (r *readSlot) read(tries int) (c readCopy, ok bool) {
	if r.key == 0 {
		return c, false
	}
	_, ok = r.seq.Read(tries, func() {
		c = readCopy{key: r.key, goid: r.goid, pc: r.pc, pc2: r.pc2}
	})
	return c, ok && c.key != 0 && c.goid != 0
}
