package arena

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ArenaFile is the name of the arena inside a run directory.
const ArenaFile = "arena"

// maxArenaSize bounds an arena; it must stay below robustOffset.
const MaxArenaSize = RobustOffset - 4096

// arena is one mapping of a run's arena file.
type Arena struct {
	path string
	G    geometry
	base unsafe.Pointer // the shared mapping
	size uintptr
	Hdr  *Header
	Ord  *orderHeader // the edges section's entry and counters, in the header page

	// For writable mappings: the reservation that holds the private robust
	// entries below the shared mapping (see robust_linux.go).
	resv     unsafe.Pointer
	resvSize uintptr
	Robust   bool

	readOnly bool // mapped PROT_READ by a reader

	// unlink, set by the writer, removes its robust-list entries of the
	// reservation [lo, hi) before it is unmapped.
	Unlink func(lo, hi uintptr)
}

// release tells the kernel that a reader is done with the bytes [off, end)
// of a read-only mapping: their pages leave this process's resident set
// (they stay in the file, and a later access maps them again). A reader of
// a large arena so keeps at most a window of it resident, whatever the
// arena's size. It does nothing on a writable mapping.
func (a *Arena) release(off, end uint64) {
	if !a.readOnly || a.base == nil {
		return
	}
	off = alignPage(off)
	end = min(end, uint64(a.size)) &^ 4095
	if end > off {
		_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(a.base, off)), end-off), unix.MADV_DONTNEED)
	}
}

func (a *Arena) Proc(i uint32) *procSlot {
	return (*procSlot)(unsafe.Add(a.base, a.G.procsOff+uint64(i)*procSize))
}

func (a *Arena) Lock(i uint32) *LockSlot {
	return (*LockSlot)(unsafe.Add(a.base, a.G.locksOff+uint64(i)*lockSize))
}

func (a *Arena) Waiter(i uint32) *WaiterSlot {
	return (*WaiterSlot)(unsafe.Add(a.base, a.G.waitersOff+uint64(i)*waiterSize))
}

func (a *Arena) Edge(i uint32) *EdgeSlot {
	return (*EdgeSlot)(unsafe.Add(a.base, a.G.edgesOff+uint64(i)*EdgeSize))
}

func (a *Arena) Unmap() error {
	if a.resv != nil {
		if a.Unlink != nil {
			a.Unlink(uintptr(a.resv), uintptr(a.resv)+a.size)
		}
		err := unix.MunmapPtr(a.resv, a.resvSize)
		a.resv, a.base = nil, nil
		return err
	}
	if a.base == nil {
		return nil
	}
	err := unix.MunmapPtr(a.base, a.size)
	a.base = nil
	return err
}

func checkPrivate(path string, fi fs.FileInfo, want fs.FileMode) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("lockreg: %s: no owner information", path)
	}
	if int(st.Uid) != os.Getuid() {
		return &ArenaError{Path: path, Kind: ErrOwner, Detail: fmt.Sprintf("owned by uid %d, not %d", st.Uid, os.Getuid()),
			Hint: "run lockwatch as the user that runs the program"}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &ArenaError{Path: path, Kind: ErrOwner, Detail: fmt.Sprintf("mode %#o is open to other users", fi.Mode().Perm()),
			Hint: fmt.Sprintf("chmod %#o it, or start a new run", want)}
	}
	return nil
}

// createArena makes the arena of a new run unless one exists. The file is
// complete before it gets its final name: it is written under a temporary
// name and linked into place, and link(2) fails rather than replace a file,
// so of many processes creating the arena at once exactly one succeeds and
// the others open that one.
func CreateArena(rd *RunDir, g geometry) error {
	// The name need only differ from another process's (O_EXCL says when
	// it does not). math/rand, not crypto/rand: crypto/rand leaves a
	// stopped one-minute timer in the runtime, which keeps Go's deadlock
	// detection off until it would have fired.
	var rnd [8]byte
	binary.LittleEndian.PutUint64(rnd[:], rand.Uint64())
	tmp := ".arena-" + hex.EncodeToString(rnd[:])
	f, err := rd.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer rd.Remove(tmp)
	defer f.Close()
	if err := f.Truncate(int64(g.Total)); err != nil {
		return err
	}
	h := Header{
		version: FormatVersion, headerSize: HeaderSize, totalSize: g.Total,
		maxProcs: g.MaxProcs, procSize: procSize, procsOff: g.procsOff,
		maxLocks: g.MaxLocks, lockSize: lockSize, locksOff: g.locksOff,
		maxWaiters: g.MaxWaiters, waiterSize: waiterSize, waitersOff: g.waitersOff,
		maxEvents: g.maxEvents, eventSize: EventSize, eventsOff: g.eventsOff,
		ringSlots: g.RingSlots, indexSlots: g.IndexSlots, indexOff: g.indexOff,
		created: time.Now().UnixNano(), creator: uint32(os.Getpid()), uid: uint32(os.Getuid()),
	}
	copy(h.magic[:], Magic)
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	if _, err := f.WriteAt(hb, 0); err != nil {
		return err
	}
	oh := orderHeader{maxEdges: g.MaxEdges, edgeSlots: g.EdgeSlots, edgeSize: EdgeSize, edgesOff: g.edgesOff}
	ob := unsafe.Slice((*byte)(unsafe.Pointer(&oh)), unsafe.Sizeof(oh))
	if _, err := f.WriteAt(ob, OrderHeaderOff); err != nil {
		return err
	}
	if err := rd.link(tmp, ArenaFile); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// openArena opens and maps the arena of the run directory rd, after
// checking everything a damaged or foreign file could get wrong. A writable
// mapping is placed above a private reservation for robust-list entries; a
// read-only one is marked as such, so that a reader may drop the pages it
// has read (see arena.release).
func OpenArena(rd *RunDir, writable, robustList bool) (*Arena, error) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	path := rd.join(ArenaFile)
	// O_NONBLOCK: a FIFO in place of the arena must not hang the opener;
	// it is refused below as not a regular file.
	f, err := rd.OpenFile(ArenaFile, flag|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &ArenaError{Path: path, Kind: ErrSymlink, Detail: "the arena is a symbolic link",
			Hint: "the run directory has been tampered with; start a new run"}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ArenaError{Path: path, Kind: ErrNotRun, Detail: "no arena file",
			Hint: "this directory holds no lockwatch run; lockwatch ps lists runs"}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &ArenaError{Path: path, Kind: ErrNotRun, Detail: "the arena is not a regular file",
			Hint: "the run directory has been tampered with; start a new run"}
	}
	if err := checkPrivate(path, fi, 0o600); err != nil {
		return nil, err
	}
	var h Header
	var oh orderHeader
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	ob := unsafe.Slice((*byte)(unsafe.Pointer(&oh)), unsafe.Sizeof(oh))
	n, _ := f.ReadAt(hb, 0)
	no, _ := f.ReadAt(ob, OrderHeaderOff)
	if n < len(hb) || no < len(ob) {
		return nil, &ArenaError{Path: path, Kind: ErrCorrupt, Detail: fmt.Sprintf("file is %d bytes, shorter than a header", fi.Size()),
			Hint: "the run directory is damaged; start a new run"}
	}
	g, err := checkHeader(&h, &oh, fi.Size())
	if err != nil {
		err.(*ArenaError).Path = path
		return nil, err
	}
	a := &Arena{path: path, G: g, size: uintptr(g.Total), readOnly: !writable}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	if writable && robustList {
		// Reserve [resv, resv+robustOffset+size): private entries at the
		// bottom, the shared file robustOffset above them.
		a.resvSize = RobustOffset + a.size
		a.resv, err = unix.MmapPtr(-1, 0, nil, a.resvSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return nil, fmt.Errorf("lockreg: reserving address space: %w", err)
		}
		if _, err = unix.MmapPtr(-1, 0, a.resv, a.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err == nil {
			a.base, err = unix.MmapPtr(int(f.Fd()), 0, unsafe.Add(a.resv, RobustOffset), a.size, prot, unix.MAP_SHARED|unix.MAP_FIXED)
		}
		if err != nil {
			_ = unix.MunmapPtr(a.resv, a.resvSize)
			return nil, fmt.Errorf("lockreg: mapping %s: %w", path, err)
		}
		a.Robust = true
	} else {
		a.base, err = unix.MmapPtr(int(f.Fd()), 0, nil, a.size, prot, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("lockreg: mapping %s: %w", path, err)
		}
	}
	a.Hdr = (*Header)(a.base)
	a.Ord = (*orderHeader)(unsafe.Add(a.base, OrderHeaderOff))
	return a, nil
}

// versionError says which side is older when an arena's format version is
// not this build's: the arena's writer (the program's lockreg) or this
// reader, and what to do. Nothing past the version is read: the layout of
// another version is not this one's.
func versionError(v uint32) error {
	e := &ArenaError{Kind: ErrVersion, Version: v}
	switch {
	case v < FormatVersion:
		e.Detail = fmt.Sprintf("format version %d, written by an older lockreg; this build reads and writes version %d only", v, FormatVersion)
		e.Hint = "read it with the lockwatch of the program's lockreg release, or start a new run (a new directory) with this one"
	default:
		e.Detail = fmt.Sprintf("format version %d, written by a newer lockreg; this build reads and writes version %d only", v, FormatVersion)
		e.Hint = "read it with a lockwatch as new as the program's lockreg"
	}
	return e
}

// checkHeader validates a header read from a file of the given size and
// returns its geometry. Every field that places or sizes memory is checked
// against the layout this version computes, so a damaged header can never
// send a reader outside the mapping.
func checkHeader(h *Header, oh *orderHeader, fileSize int64) (geometry, error) {
	bad := func(kind error, format string, args ...any) (geometry, error) {
		hint := "the run directory is damaged; start a new run"
		if kind == ErrVersion {
			hint = "read it with the lockwatch that matches the program's lockreg"
		}
		return geometry{}, &ArenaError{Kind: kind, Detail: fmt.Sprintf(format, args...), Hint: hint}
	}
	if string(h.magic[:]) != Magic {
		return bad(ErrCorrupt, "bad magic %q, want %q", h.magic[:], Magic)
	}
	if h.version != FormatVersion {
		return geometry{}, versionError(h.version)
	}
	if h.headerSize != HeaderSize || h.procSize != procSize || h.lockSize != lockSize ||
		h.waiterSize != waiterSize || h.eventSize != EventSize {
		return bad(ErrCorrupt, "record sizes %d/%d/%d/%d/%d do not match version %d",
			h.headerSize, h.procSize, h.lockSize, h.waiterSize, h.eventSize, FormatVersion)
	}
	if h.maxProcs == 0 || h.maxLocks == 0 || h.maxWaiters == 0 || h.maxProcs > 1<<20 || h.maxLocks > 1<<22 ||
		h.maxWaiters > 1<<22 || h.ringSlots < minRing || h.ringSlots > maxRing || h.ringSlots&(h.ringSlots-1) != 0 {
		return bad(ErrCorrupt, "impossible capacities procs=%d locks=%d waiters=%d events per lock=%d",
			h.maxProcs, h.maxLocks, h.maxWaiters, h.ringSlots)
	}
	if oh.edgeSize != EdgeSize || oh.maxEdges == 0 || oh.maxEdges > LimitEdges || oh.edgeSlots != edgeSlotsFor(oh.maxEdges) {
		return bad(ErrCorrupt, "impossible edge table: capacity %d, %d slots of %d bytes", oh.maxEdges, oh.edgeSlots, oh.edgeSize)
	}
	g := Layout(h.maxProcs, h.maxLocks, h.maxWaiters, h.ringSlots).WithEdges(oh.maxEdges)
	if oh.edgesOff != g.edgesOff {
		return bad(ErrCorrupt, "section table does not match its capacities")
	}
	if h.procsOff != g.procsOff || h.locksOff != g.locksOff || h.waitersOff != g.waitersOff ||
		h.eventsOff != g.eventsOff || h.maxEvents != g.maxEvents || h.indexSlots != g.IndexSlots ||
		h.indexOff != g.indexOff || h.totalSize != g.Total {
		return bad(ErrCorrupt, "section table does not match its capacities")
	}
	if g.Total > MaxArenaSize {
		return bad(ErrCorrupt, "size %d exceeds the maximum %d", g.Total, MaxArenaSize)
	}
	if uint64(fileSize) != g.Total {
		return bad(ErrCorrupt, "file is %d bytes; its header says %d (truncated?)", fileSize, g.Total)
	}
	if h.Nlocks.Load() > h.maxLocks || h.Nindexed.Load() > h.maxLocks {
		return bad(ErrCorrupt, "%d locks in use (%d indexed) of %d", h.Nlocks.Load(), h.Nindexed.Load(), h.maxLocks)
	}
	return g, nil
}
