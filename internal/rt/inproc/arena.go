package inproc

import (
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/seqlock"
)

// The records of every drop-in lock of the process live in one arena of
// fixed size, holding no Go pointer: holder records, waiter records, reader
// records and names. A lock keeps nothing but, while it is held for
// writing, the index of its holder record (sync.Mutex's h), so an unlocked
// lock is all zeros, as sync's is, and nothing registers it.
//
// Every write to the arena is a plain store in a //go:norace function or a
// quiet CAS (internal/rt/seqlock): the race detector sees none of them, so
// the records add no happens-before edge between the program's goroutines.
// Each record is written and copied under its sequence word, by the
// protocol of internal/rt/seqlock. Waiter, reader and name records are
// claimed by a CAS of their key (the lock's address) from 0 before the write
// that fills them, and freed by setting the key to 0 after the write that
// empties them (goroutine 0; a name of length 0): so a consistent copy with
// a goroutine other than 0 is of a live record, whose key cannot change
// before a write that the copy's sequence check would see. A holder
// record's key is stored inside the write that fills it, and freed alone
// (holds.go).

const (
	// Holder records: one region of regionSlots per P (the first
	// nRegions Ps), claimed with plain stores while the goroutine is
	// pinned to its P, so a Lock that does not wait makes no atomic
	// read-modify-write of its own; then a shared region claimed by CAS.
	nRegions    = 64
	regionSlots = 64
	sharedHolds = 1024
	nHolds      = nRegions*regionSlots + sharedHolds

	waitSlots  = 2048 // a power of two
	waitProbes = 16
	readSlots  = 4096 // a power of two
	readProbes = 8
	nameSlots  = 1024 // a power of two
	nameProbes = 16
	// NameMax is the longest name kept, in bytes; a longer one is cut at a
	// character boundary.
	NameMax = 104

	arenaMagic   = 0x6c6f636b77617463 // "lockwatc"
	arenaVersion = 2                  // version 1 had begin/end counters in place of the sequence word
)

// Header opens the arena: what a reader in another process needs to find
// its way (docs/dropin.md).
type header struct {
	magic, version uint64
	size           uint64 // of the arena, bytes
	nHolds, nWait  uint64
	nRead, nNames  uint64
	maxFrames      uint64
	// moreHolders counts holds that found no record (every region full);
	// moreWaiters waiters that found none.
	moreHolders, moreWaiters uint64
	// A clock pair taken when the arena was made: Nanotime and
	// wall-clock Unix nanoseconds, to place the records' times.
	mono0, wall0 int64
	// The process: its pid and start time (clock ticks since boot,
	// /proc/PID/stat's field 22), so that a reader can tell it from a
	// later process with the same pid.
	pid, start uint64
	_          [48]byte
}

// holdSlot is a holder record: who holds the lock at key (its address;
// 0 when the slot is free), from where and since when. 64 bytes.
type holdSlot struct {
	seq     seqlock.Seq32
	_       uint32
	key     uintptr
	goid    int64
	pc, pc2 uintptr
	since   int64  // Nanotime of the acquire when it waited first; 0 unknown
	wslot   uint32 // 1 + the waiter slot that keeps the holder's stack, or 0
	kind    uint32 // Kind
	// seen is set by the first goroutine that waits for the lock while
	// this hold has no time (it did not wait): the hold's sequence (high
	// 32 bits) and the time it was seen held, in milliseconds since the
	// arena's mono0, plus one. A reader keeps it only if the sequence is
	// the record's: a later hold of the slot discards it.
	seen uint64
}

// Arena is the records' memory.
type arenaT struct {
	hdr     header
	holds   [nHolds]holdSlot
	waiters [waitSlots]waitSlot
	readers [readSlots]readSlot
	names   [nameSlots]nameSlot
}

// ArenaSize is the arena's size in bytes.
const ArenaSize = unsafe.Sizeof(arenaT{})

// inGo is the arena where no shared mapping could be made (arena_linux.go).
var inGo arenaT

// ar is the arena: nil until the first record needs it (arena), then set
// once. A program in the owner mode never makes it.
var ar *arenaT

// arState is 0 before the arena is made, 1 while it is made, 2 once ar is
// set: the arena is made once, by a quiet CAS that the race detector does
// not see (a sync.Once would be a happens-before edge between the
// goroutines that record first).
var arState uint64

// Env names the environment variable that selects the drop-in's mode:
// "records" for the records mode, "owner" for the owner mode. Unset, the
// mode is records under lockwatch run (LOCKWATCH_DIR set), else owner.
const Env = "LOCKWATCH_DROPIN"

// RecordsMode reports whether the program keeps the full records (the
// records mode, Env): called once, when the drop-in initializes. Under
// lockwatch run it makes the arena now, a file of the run directory, so
// that the run sees the program join before it locks anything.
func RecordsMode() bool {
	on := false
	switch os.Getenv(Env) {
	case "records":
		on = true
	case "owner":
	default:
		on = os.Getenv("LOCKWATCH_DIR") != ""
	}
	if on && os.Getenv("LOCKWATCH_DIR") != "" {
		arena()
	}
	return on
}

// OwnerModeAsked reports whether Env asks for the owner mode.
func OwnerModeAsked() bool { return os.Getenv(Env) == "owner" }

// wanted is set by WantRecords; onRecords is the drop-in's switch to the
// records mode (OnRecords). Both are set before main (package inits).
var (
	wanted    bool
	onRecords func()
)

// WantRecords asks for the records mode (unless Env asks for the owner
// mode): the probe, which serves the records, calls it when it
// initializes, before or after the drop-in. After, the program may already
// hold locks taken in the owner mode (by the inits of packages that import
// the drop-in and not the probe); the drop-in allows for them (its late).
func WantRecords() {
	if OwnerModeAsked() {
		return
	}
	wanted = true
	if onRecords != nil {
		onRecords()
	}
}

// OnRecords registers the drop-in's switch to the records mode and reports
// whether the records mode is already asked for (RecordsMode, or
// WantRecords called before).
func OnRecords(f func()) bool {
	onRecords = f
	return wanted || RecordsMode()
}

// arena returns the arena, made by the first call: shared memory where it
// can be made (arena_linux.go), else inGo.
//
//go:norace
func arena() *arenaT {
	if a := ar; a != nil {
		return a
	}
	return makeArena()
}

//go:norace
//go:noinline
func makeArena() *arenaT {
	if seqlock.CAS64(&arState, 0, 1) {
		a := sharedArena()
		if a == nil {
			a = &inGo
			a.init(0, 0, nanotime(), time.Now().UnixNano())
		}
		seqlock.StoreFence()
		ar = a
		seqlock.StoreFence()
		arState = 2
		return a
	}
	// Another goroutine makes it: a few system calls.
	for loadU64(&arState) != 2 {
		runtime.Gosched()
	}
	seqlock.LoadFence()
	return ar
}

// reading is the arena for a reader in process: inGo, empty, if none was
// made.
//
//go:norace
func reading() *arenaT {
	if a := ar; a != nil {
		return a
	}
	return &inGo
}

// init writes the header of a new arena. The magic is written last: a
// reader that sees it sees the rest.
func (a *arenaT) init(pid, start uint64, mono, wall int64) {
	a.hdr = header{version: arenaVersion, size: uint64(ArenaSize), nHolds: nHolds,
		nWait: waitSlots, nRead: readSlots, nNames: nameSlots, maxFrames: maxFrames,
		mono0: mono, wall0: wall, pid: pid, start: start}
	seqlock.StoreFence()
	a.hdr.magic = arenaMagic
}

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// mix is a 64-bit finalizer (splitmix64's), to spread goroutine ids and
// addresses over the slot tables.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// escape is never set: Escape's store is never made, but the compiler
// cannot know, so every lock passed to it lives on the heap (or is a
// global). A lock on a goroutine's stack would move when the stack grows,
// and its reader records, found again by its address, would be lost.
var escape struct {
	on bool
	p  any
}

// Escape makes p escape to the heap; it costs a load and a branch.
func Escape(p any) {
	if escape.on {
		escape.p = p
	}
}
