package arena

import (
	"sync/atomic"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// The arena is one file, mapped MAP_SHARED by every process of a run. All
// multi-byte fields are native-endian (the arena never leaves the machine).
// Its layout, with offsets in bytes (docs/registry-format.md argues each
// choice):
//
//	header   [0, 4096)                    magic, version, section table, shared counters
//	procs    [procsOff, +maxProcs*64)     process table
//	locks    [locksOff, +maxLocks*192)    lock slots: futex word, fencing counter, holder record, name
//	waiters  [waitersOff, +maxWaiters*64) waiter records
//	events   [eventsOff, +maxLocks*ring)  one event ring per lock, ring = 64 + ringSlots*64
//	index    [indexOff, +indexSlots*4)    the name index: lock index + 1 by hash of the name
//	edges    [edgesOff, +edgeSlots*64)    lock-order edges (order.go), a hash table
//
// The edges section is described by its own entry of the section table, at
// offset orderHeaderOff of the header page (orderHeader).
// Every section starts on a 4096-byte boundary. The header is written once,
// before the file is linked into the run directory under its final name, so
// a process that can open the arena always sees a complete header.

const (
	Magic = "LOCKWREG"
	// 2: process slots are reclaimed (owner word, seqlock); events carry the
	// start time. 3: lock-order edges. 4: an event ring per lock, the name
	// index. 5: a fencing counter per lock (lock records of 192 bytes) and
	// the hold's token in each event (events of 64 bytes).
	FormatVersion = 5

	HeaderSize  = 4096
	procSize    = 64
	lockSize    = 192
	waiterSize  = 64
	EventSize   = 64
	ringHdrSize = 64

	MaxNameLen = 63

	// Event slots per lock: a power of two in [minRing, maxRing], half for
	// the holders' ring, half for the waiters'.
	minRing = 4
	maxRing = 1024
)

// Lock word bits, as the kernel's robust-futex code defines them
// (include/uapi/linux/futex.h): the holder's pid is in the low 30 bits.
const (
	WaitersBit   = 0x80000000 // FUTEX_WAITERS: someone sleeps, or may, on the word
	OwnerDiedBit = 0x40000000 // FUTEX_OWNER_DIED: the holder died holding it
	TidMask      = 0x3fffffff // FUTEX_TID_MASK
)

// header is the arena's first page.
type Header struct {
	magic      [8]byte       // 0
	version    uint32        // 8
	headerSize uint32        // 12
	totalSize  uint64        // 16
	maxProcs   uint32        // 24
	procSize   uint32        // 28
	procsOff   uint64        // 32
	maxLocks   uint32        // 40
	lockSize   uint32        // 44
	locksOff   uint64        // 48
	maxWaiters uint32        // 56
	waiterSize uint32        // 60
	waitersOff uint64        // 64
	maxEvents  uint32        // 72 event slots in all: maxLocks * ringSlots
	eventSize  uint32        // 76
	eventsOff  uint64        // 80
	created    int64         // 88 unix nanoseconds
	creator    uint32        // 96 pid of the creating process
	uid        uint32        // 100 owner; the file's owner must match
	NamesLock  atomic.Uint32 // 104 futex word serialising lock-slot allocation
	Nlocks     atomic.Uint32 // 108 lock slots in use; slots [0, nlocks) have names
	Dropped    atomic.Uint64 // 112 waiter events not recorded (the ring slot was busy)
	ringSlots  uint32        // 120 event slots per lock, a power of two
	Nindexed   atomic.Uint32 // 124 slots [0, nindexed) are in the name index
	indexSlots uint32        // 128 entries of the name index, a power of two
	_          uint32        // 132
	indexOff   uint64        // 136
	_          [48]byte      // 144
}

// procSlot is one process-table entry. Slots are reused: a slot passes from
// one process to the next by a CAS on owner, which holds the claimant's pid
// and a generation that every claim increments, so that a claim made on a
// stale reading of the slot always fails. The claimant then writes the
// other fields under seq, a seqlock (internal/rt/seqlock), with tag = its
// owner value: a reader's copy describes the process of claim tag, and only
// that claim. Only the claiming process writes the fields. Never-claimed slots (owner 0)
// all follow the claimed ones: slots are claimed first in order, and a
// reclaimed slot goes from one owner to the next without being free.
type procSlot struct {
	state      atomic.Uint32 // 0 procFree, procRunning, procExited (under seq)
	pid        atomic.Uint32 // 4 (under seq)
	flags      atomic.Uint32 // 8 procRobust (under seq)
	seq        seqlock.Seq32 // 12 seqlock over the fields marked "under seq"
	start      atomic.Uint64 // 16 /proc/PID/stat starttime, clock ticks (under seq)
	registered atomic.Int64  // 24 CLOCK_MONOTONIC ns (under seq)
	exited     atomic.Int64  // 32 CLOCK_MONOTONIC ns, when state became procExited (under seq)
	Owner      atomic.Uint64 // 40 claim word: generation<<32 | pid; 0 = never claimed; changed only by CAS
	tag        atomic.Uint64 // 48 the owner value these fields were written for (under seq)
	_          [8]byte       // 56
}

const (
	SlotFree    = 0
	SlotRunning = 1
	SlotExited  = 2 // closed the registry: a clean exit

	ProcRobust = 1 // the kernel's robust list protects this process's locks
)

// holderRec is a lock's holder record, under a seqlock (internal/rt/seqlock):
// the holder makes seq odd, writes the fields, makes seq even. Only the
// holder writes it.
//
// Token, first, is the lock's fencing counter: the token of its latest
// acquire. Every acquire adds one to it, holding the lock (the lock word
// makes holders take turns, so a plain increment suffices); a recording
// holder writes it under Seq with the record, so that a reader's copy pairs
// a holder with its own token. It starts at the wall-clock time (Unix ns)
// at which the lock was named, so that a lock of the same name in a later
// run starts above every token this one can issue (docs/registry-format.md).
type holderRec struct {
	Token atomic.Uint64 // 8 (offsets within lockSlot)
	Seq   seqlock.Seq32 // 16
	proc  atomic.Uint32 // 20 process-table index + 1; 0 = none
	Pid   atomic.Uint32 // 24
	// ring is not part of the record: it is the head of the lock's holder
	// ring (events written by holders), here because only the holder
	// writes it and the acquire has this line already.
	Ring  atomic.Uint32 // 28
	start atomic.Uint64 // 32
	Goid  atomic.Uint64 // 40
	Stack atomic.Uint64 // 48 stack-dictionary id
	since atomic.Int64  // 56 CLOCK_MONOTONIC ns of the acquire
}

// lockSlot is one named lock. Its first cache line is everything the acquire
// path touches: the futex word, the fencing counter and the holder record.
type LockSlot struct {
	Word    atomic.Uint32 // 0 futex word: holder pid | waitersBit | ownerDiedBit
	State   atomic.Uint32 // 4 0 free, 1 named
	Holder  holderRec     // 8
	NameLen uint8         // 64
	Name    [MaxNameLen]byte
	Waiting atomic.Int32  // 128 goroutines in the slow path without a waiter record (the table was full), all processes
	Noted   atomic.Uint32 // 132 1 once a waiter has recorded the holder's death
	_       [56]byte      // 136
}

// waiterSlot is a waiter record: a goroutine sleeping in a lock's slow path.
// A process claims a slot by CAS(owner, 0, pid) and frees it by storing 0.
// The rest is under a seqlock as in holderRec.
type WaiterSlot struct {
	Seq   seqlock.Seq32 // 0
	Owner atomic.Uint32 // 4 pid that claimed the slot; 0 = free
	Lock  atomic.Uint32 // 8 lock index + 1; 0 = not waiting
	Proc  atomic.Uint32 // 12 process-table index + 1
	Start atomic.Uint64 // 16
	Goid  atomic.Uint64 // 24
	Stack atomic.Uint64 // 32
	Since atomic.Int64  // 40 CLOCK_MONOTONIC ns the wait began
	Pid   atomic.Uint32 // 48 the owner's pid, under the seqlock (owner is not)
	_     [12]byte      // 52
}

// ringHdr heads a lock's event ring; the ring's slots follow it: first
// the holder ring (ringSlots/2), then the waiter ring (ringSlots/2).
//
// Holder events (acquire, release, recovered) are written only by the
// lock's holder, so holders need no claim: the lock word serialises them.
// The holder ring's head (lockSlot.holder.ring, 32 bits, wrapping) says
// which slot is next: ticket t lives in slot t % (ringSlots/2), its seq is
// 2t+1 while written and 2t+2 once complete, and the head is advanced after.
//
// Waiter events (wait, stuck, timeout, owner-died) come from any number of
// goroutines at once: a writer takes ticket t from waitTicket and claims
// slot t % (ringSlots/2) with a CAS of its seq (seqlock.Seq64.Claim).
type RingHdr struct {
	WaitTicket atomic.Uint64 // 0 next waiter-ring ticket
	_          [56]byte      // 8
}

// eventSlot is one event. An event names its process by pid and start
// time, never by a process-table slot, since slots are reused
// (docs/registry-format.md).
type EventSlot struct {
	Seq   seqlock.Seq64 // 0 2t+1 while ticket t is written, 2t+2 once complete
	What  atomic.Uint32 // 8 kind<<24 | pos: holder ring, the low 24 bits of waitTicket when written (its place among waiter events); waiter ring, 0
	Pid   atomic.Uint32 // 12
	Start atomic.Uint64 // 16 the process's start time
	Goid  atomic.Uint64 // 24
	Time  atomic.Int64  // 32 CLOCK_MONOTONIC ns
	Stack atomic.Uint64 // 40
	// Token is the fencing token of the hold the event is about (acquire,
	// release, recovered: the holder's; owner-died: the dead holder's, from
	// its record); 0 for the others.
	Token atomic.Uint64 // 48
	_     [8]byte       // 56
}

// eventWhat packs an event's kind and its place among waiter events (pos,
// 24 bits); splitWhat unpacks them.
func EventWhat(kind EventKind, pos uint32) uint32 { return uint32(kind)<<24 | pos&(1<<24-1) }

func splitWhat(w uint32) (EventKind, uint32) { return EventKind(w >> 24), w & (1<<24 - 1) }

// Compile-time checks that the Go structs have the documented sizes.
var (
	_ [0]byte = [unsafe.Sizeof(Header{}) - 192]byte{}
	_ [0]byte = [unsafe.Sizeof(procSlot{}) - procSize]byte{}
	_ [0]byte = [unsafe.Sizeof(LockSlot{}) - lockSize]byte{}
	_ [0]byte = [unsafe.Sizeof(WaiterSlot{}) - waiterSize]byte{}
	_ [0]byte = [unsafe.Sizeof(EventSlot{}) - EventSize]byte{}
	_ [0]byte = [unsafe.Sizeof(RingHdr{}) - ringHdrSize]byte{}
)

// geometry is the section table of an arena.
type geometry struct {
	MaxProcs, MaxLocks, MaxWaiters, RingSlots uint32
	maxEvents, IndexSlots                     uint32
	procsOff, locksOff, waitersOff, eventsOff uint64
	indexOff, ringSize                        uint64
	Total                                     uint64

	MaxEdges, EdgeSlots uint32 // capacity of the edge table, and its slots (a power of two, at least twice the capacity)
	edgesOff            uint64
}

func alignPage(n uint64) uint64 { return (n + 4095) &^ 4095 }

func Layout(maxProcs, maxLocks, maxWaiters, ringSlots uint32) geometry {
	g := geometry{MaxProcs: maxProcs, MaxLocks: maxLocks, MaxWaiters: maxWaiters, RingSlots: ringSlots,
		maxEvents: maxLocks * ringSlots, IndexSlots: indexSlotsFor(maxLocks)}
	g.ringSize = ringHdrSize + uint64(ringSlots)*EventSize
	off := uint64(HeaderSize)
	g.procsOff, off = off, alignPage(off+uint64(maxProcs)*procSize)
	g.locksOff, off = off, alignPage(off+uint64(maxLocks)*lockSize)
	g.waitersOff, off = off, alignPage(off+uint64(maxWaiters)*waiterSize)
	g.eventsOff, off = off, alignPage(off+uint64(maxLocks)*g.ringSize)
	g.indexOff, off = off, alignPage(off+uint64(g.IndexSlots)*4)
	g.Total = off
	return g
}

// indexSlotsFor is the size of the name index for n locks: a power of two
// at least twice n, so that the table is at most half full.
func indexSlotsFor(n uint32) uint32 {
	p := uint32(1)
	for p < 2*n {
		p <<= 1
	}
	return p
}

// ringSlotsFor divides an event budget among locks: events/locks rounded
// down to a power of two, clamped to [minRing, maxRing].
func RingSlotsFor(events, locks int) uint32 {
	per := events / max(locks, 1)
	p := uint32(minRing)
	for p < maxRing && int(p)*2 <= per {
		p <<= 1
	}
	return p
}
