package seqlock

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Seq32 is a record's 32-bit sequence word (see the package doc). Its zero
// value is a record never written; its layout is one uint32, so that it can
// sit in a shared arena at a fixed offset.
type Seq32 struct{ v atomic.Uint32 }

// Seq64 is Seq32 with a 64-bit word, 8-byte aligned.
type Seq64 struct{ v atomic.Uint64 }

// Load returns the sequence.
func (s *Seq32) Load() uint32 { return s.v.Load() }

// Begin opens a write by the record's only writer: it makes the sequence
// odd, one past the next even value (so a write left open by a writer that
// died is closed over), and returns the value to pass to End.
func (s *Seq32) Begin() (end uint32) {
	v := (s.v.Load() + 1) &^ 1
	openOdd32(&s.v, v+1)
	return v + 2
}

// BeginAt opens a write at the odd value odd, which the writer chose (a ring
// slot's ticket). The writer must be the record's only one.
func (s *Seq32) BeginAt(odd uint32) { openOdd32(&s.v, odd) }

// Claim opens a write at odd if the sequence is still old: of writers that
// race for one record, one wins. The CAS is quiet (unseen by the race
// detector), and the field stores after it stay after it.
func (s *Seq32) Claim(old, odd uint32) bool {
	if !CAS32((*uint32)(unsafe.Pointer(&s.v)), old, odd) {
		return false
	}
	StoreFence() // arm64: a store-exclusive orders the stores before it only
	return true
}

// End closes a write: even is Begin's result, or the odd value of BeginAt or
// Claim plus one.
func (s *Seq32) End(even uint32) { closeEven32(&s.v, even) }

// Valid reports whether the sequence is still v, after the loads of the
// fields that precede it: a read's last step.
func (s *Seq32) Valid(v uint32) bool {
	LoadFence()
	return s.v.Load() == v
}

// Read copies a record: copy loads its fields, between a load of the
// sequence that found it even and Valid. It tries up to tries times,
// yielding the processor between tries, and reports the sequence of the
// copy kept, or ok=false if every try raced with a write (or the record was
// left mid-write): the copy is then torn and must not be used.
func (s *Seq32) Read(tries int, copy func()) (v uint32, ok bool) {
	return read(s.Load, s.Valid, tries, copy)
}

// Load returns the sequence.
func (s *Seq64) Load() uint64 { return s.v.Load() }

// BeginAt opens a write at the odd value odd; see Seq32.BeginAt.
func (s *Seq64) BeginAt(odd uint64) { openOdd64(&s.v, odd) }

// Claim opens a write at odd if the sequence is still old; see Seq32.Claim.
func (s *Seq64) Claim(old, odd uint64) bool {
	if !CAS64((*uint64)(unsafe.Pointer(&s.v)), old, odd) {
		return false
	}
	StoreFence() // arm64: a store-exclusive orders the stores before it only
	return true
}

// End closes a write; see Seq32.End.
func (s *Seq64) End(even uint64) { closeEven64(&s.v, even) }

// Valid reports whether the sequence is still v; see Seq32.Valid.
func (s *Seq64) Valid(v uint64) bool {
	LoadFence()
	return s.v.Load() == v
}

func read[W uint32 | uint64](load func() W, valid func(W) bool, tries int, copy func()) (v W, ok bool) {
	for try := 0; try < tries; try++ {
		if try > 0 {
			runtime.Gosched()
		}
		if v = load(); v&1 == 0 {
			copy()
			if valid(v) {
				return v, true
			}
		}
	}
	return v, false
}
