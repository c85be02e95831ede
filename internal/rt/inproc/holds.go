package inproc

import "github.com/lockwatch/lockwatch/internal/rt/seqlock"

// Holder records (arena.go). Hold is called by a goroutine that has just
// acquired a lock for writing; Unhold by whoever unlocks it, with Hold's
// result, which the lock keeps meanwhile. A slot is written by one goroutine
// at a time: its claimer (pinned to the P whose region it is in, or
// winning the claim of a shared slot's sequence) until it sets key; then
// the lock's holder, until Unhold stores key = 0 last, after which only the
// region's P (or a claim) takes it again. A key other than 0 is stored only
// inside a write (fill), so a reader's consistent copy never pairs a new
// key with the fields of the hold before it.

// Overflow is Hold's result when no slot was free: counted in
// header.moreHolders, released by Unhold.
const Overflow = ^uint32(0)

// Hold records that goroutine goid holds the lock at addr since since (0:
// not known), locked at pc (its caller at pc2), with wslot (1 + the waiter
// slot that keeps its stack, or 0). It returns what Unhold needs: 1 + the
// slot, or Overflow.
//
//go:norace
func Hold(addr uintptr, kind Kind, goid int64, pc, pc2 uintptr, since int64, wslot uint32) uint32 {
	a := arena()
	p := procPin()
	if p < nRegions {
		base := p * regionSlots
		for i := base; i < base+regionSlots; i++ {
			s := &a.holds[i]
			if s.key == 0 {
				fill(s, s.seq.Begin(), addr, kind, goid, pc, pc2, since, wslot)
				procUnpin()
				return uint32(i) + 1
			}
		}
	}
	procUnpin()
	return holdShared(a, addr, kind, goid, pc, pc2, since, wslot)
}

//go:norace
//go:noinline
func holdShared(a *arenaT, addr uintptr, kind Kind, goid int64, pc, pc2 uintptr, since int64, wslot uint32) uint32 {
	h := mix(uint64(addr))
	for k := uint64(0); k < sharedHolds; k++ {
		i := nRegions*regionSlots + int((h+k)%sharedHolds)
		s := &a.holds[i]
		// Claimed by a CAS of the sequence from an even value it had while
		// the key was 0: no other claim can have filled the slot between
		// (it would have moved the sequence), and the key is stored in
		// the write, like the other fields.
		if s.key != 0 {
			continue
		}
		if v := s.seq.Load(); v&1 == 0 && s.key == 0 && s.seq.Claim(v, v+1) {
			fill(s, v+2, addr, kind, goid, pc, pc2, since, wslot)
			return uint32(i) + 1
		}
	}
	seqlock.Add64(&a.hdr.moreHolders, 1)
	return Overflow
}

// fill writes a hold into s, whose write is open (Begin or Claim), and
// ends the write at end.
//
//go:norace
func fill(s *holdSlot, end uint32, addr uintptr, kind Kind, goid int64, pc, pc2 uintptr, since int64, wslot uint32) {
	s.goid = goid
	s.pc, s.pc2 = pc, pc2
	s.since = since
	s.wslot = wslot
	s.kind = uint32(kind)
	s.seen = 0
	s.key = addr
	s.seq.End(end)
}

// Unhold ends the hold h (Hold's result) and returns its goroutine. Its
// common case (a record that keeps no stack) is one store: key = 0 frees
// the record. A reader that loaded the key before it has a consistent copy
// of the hold that just ended; the next claim of the slot moves its
// sequence, so a copy torn by it is retried.
//
//go:norace
func Unhold(h uint32) int64 {
	if h != Overflow {
		if s := &ar.holds[h-1]; s.wslot == 0 {
			g := s.goid
			s.key = 0
			return g
		}
	}
	return unholdSlow(h)
}

//go:norace
//go:noinline
func unholdSlow(h uint32) int64 {
	a := ar
	if h == Overflow {
		seqlock.Add64(&a.hdr.moreHolders, ^uint64(0))
		return 0
	}
	s := &a.holds[h-1]
	g, w := s.goid, s.wslot
	end := s.seq.Begin()
	s.goid = 0
	s.wslot = 0
	s.seq.End(end)
	seqlock.StoreFence()
	s.key = 0
	if w != 0 {
		release(a, &a.waiters[w-1])
	}
	return g
}

// Seen tells hold h of the lock at addr, if it has no time, that it was
// seen held at now (Nanotime): called by a goroutine about to wait for the
// lock, with the lock's h as it read it. If the slot has since been
// released or taken by another hold, nothing is kept (see holdSlot.seen).
//
//go:norace
func Seen(h uint32, addr uintptr, now int64) {
	if h == 0 || h == Overflow || h > nHolds {
		return
	}
	a := reading()
	s := &a.holds[h-1]
	e := s.seq.Load()
	if e&1 != 0 || s.key != addr || s.goid == 0 || s.since != 0 || s.seen != 0 || !s.seq.Valid(e) {
		return
	}
	ms := (now-a.hdr.mono0)/1e6 + 1
	if ms <= 0 || ms > 0xffffffff {
		return
	}
	seqlock.CAS64(&s.seen, 0, uint64(e)<<32|uint64(ms))
}

// HolderOf returns the goroutine of hold h, for lock-order checks.
//
//go:norace
func HolderOf(h uint32) int64 {
	if h == 0 || h == Overflow {
		return 0
	}
	return reading().holds[h-1].goid
}

// holdCopy is a consistent copy of a holder record.
type holdCopy struct {
	key         uintptr
	goid        int64
	pc, pc2     uintptr
	since       int64
	wslot, kind uint32
	seenOnly    bool // since is when a waiter saw it held, not when it acquired
}

//go:norace
func (s *holdSlot) read(tries int, mono0 int64) (c holdCopy, ok bool) {
	var seen uint64
	e, ok := s.seq.Read(tries, func() {
		c = holdCopy{key: s.key, goid: s.goid, pc: s.pc, pc2: s.pc2, since: s.since, wslot: s.wslot, kind: s.kind}
		seen = s.seen
	})
	if !ok {
		return c, false
	}
	if c.since == 0 && seen != 0 && uint32(seen>>32) == e {
		// Not when it acquired, but when a waiter found it held: it has
		// held at least since.
		c.since = mono0 + (int64(seen&0xffffffff)-1)*1e6
		c.seenOnly = true
	}
	return c, c.key != 0 && c.goid != 0
}
