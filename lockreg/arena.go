package lockreg

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ArenaFile is the name of the arena inside a run directory.
const ArenaFile = "arena"

// maxArenaSize bounds an arena; it must stay below robustOffset.
const maxArenaSize = robustOffset - 4096

// arena is one mapping of a run's arena file.
type arena struct {
	path string
	g    geometry
	base unsafe.Pointer // the shared mapping
	size uintptr
	hdr  *header
	ord  *orderHeader // the edges section's entry and counters, in the header page

	// For writable mappings: the reservation that holds the private robust
	// entries below the shared mapping (see robust_linux.go).
	resv     unsafe.Pointer
	resvSize uintptr
	robust   bool

	readOnly bool // mapped PROT_READ by a reader
}

// release tells the kernel that a reader is done with the bytes [off, end)
// of a read-only mapping: their pages leave this process's resident set
// (they stay in the file, and a later access maps them again). A reader of
// a large arena so keeps at most a window of it resident, whatever the
// arena's size. It does nothing on a writable mapping.
func (a *arena) release(off, end uint64) {
	if !a.readOnly || a.base == nil {
		return
	}
	off = alignPage(off)
	end = min(end, uint64(a.size)) &^ 4095
	if end > off {
		_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(a.base, off)), end-off), unix.MADV_DONTNEED)
	}
}

func (a *arena) proc(i uint32) *procSlot {
	return (*procSlot)(unsafe.Add(a.base, a.g.procsOff+uint64(i)*procSize))
}

func (a *arena) lock(i uint32) *lockSlot {
	return (*lockSlot)(unsafe.Add(a.base, a.g.locksOff+uint64(i)*lockSize))
}

func (a *arena) waiter(i uint32) *waiterSlot {
	return (*waiterSlot)(unsafe.Add(a.base, a.g.waitersOff+uint64(i)*waiterSize))
}

func (a *arena) edge(i uint32) *edgeSlot {
	return (*edgeSlot)(unsafe.Add(a.base, a.g.edgesOff+uint64(i)*edgeSize))
}

func (a *arena) unmap() error {
	if a.resv != nil {
		robustUnlinkRange(uintptr(a.resv), uintptr(a.resv)+a.size)
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
func createArena(rd *RunDir, g geometry) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".arena-" + hex.EncodeToString(rnd[:])
	f, err := rd.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer rd.Remove(tmp)
	defer f.Close()
	if err := f.Truncate(int64(g.total)); err != nil {
		return err
	}
	h := header{
		version: formatVersion, headerSize: headerSize, totalSize: g.total,
		maxProcs: g.maxProcs, procSize: procSize, procsOff: g.procsOff,
		maxLocks: g.maxLocks, lockSize: lockSize, locksOff: g.locksOff,
		maxWaiters: g.maxWaiters, waiterSize: waiterSize, waitersOff: g.waitersOff,
		maxEvents: g.maxEvents, eventSize: eventSize, eventsOff: g.eventsOff,
		ringSlots: g.ringSlots, indexSlots: g.indexSlots, indexOff: g.indexOff,
		created: time.Now().UnixNano(), creator: uint32(os.Getpid()), uid: uint32(os.Getuid()),
	}
	copy(h.magic[:], magic)
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	if _, err := f.WriteAt(hb, 0); err != nil {
		return err
	}
	oh := orderHeader{maxEdges: g.maxEdges, edgeSlots: g.edgeSlots, edgeSize: edgeSize, edgesOff: g.edgesOff}
	ob := unsafe.Slice((*byte)(unsafe.Pointer(&oh)), unsafe.Sizeof(oh))
	if _, err := f.WriteAt(ob, orderHeaderOff); err != nil {
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
func openArena(rd *RunDir, writable bool) (*arena, error) {
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
	var h header
	var oh orderHeader
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	ob := unsafe.Slice((*byte)(unsafe.Pointer(&oh)), unsafe.Sizeof(oh))
	n, _ := f.ReadAt(hb, 0)
	no, _ := f.ReadAt(ob, orderHeaderOff)
	if n < len(hb) || no < len(ob) {
		return nil, &ArenaError{Path: path, Kind: ErrCorrupt, Detail: fmt.Sprintf("file is %d bytes, shorter than a header", fi.Size()),
			Hint: "the run directory is damaged; start a new run"}
	}
	g, err := checkHeader(&h, &oh, fi.Size())
	if err != nil {
		err.(*ArenaError).Path = path
		return nil, err
	}
	a := &arena{path: path, g: g, size: uintptr(g.total), readOnly: !writable}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	if writable && robust.ok {
		// Reserve [resv, resv+robustOffset+size): private entries at the
		// bottom, the shared file robustOffset above them.
		a.resvSize = robustOffset + a.size
		a.resv, err = unix.MmapPtr(-1, 0, nil, a.resvSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return nil, fmt.Errorf("lockreg: reserving address space: %w", err)
		}
		if _, err = unix.MmapPtr(-1, 0, a.resv, a.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err == nil {
			a.base, err = unix.MmapPtr(int(f.Fd()), 0, unsafe.Add(a.resv, robustOffset), a.size, prot, unix.MAP_SHARED|unix.MAP_FIXED)
		}
		if err != nil {
			_ = unix.MunmapPtr(a.resv, a.resvSize)
			return nil, fmt.Errorf("lockreg: mapping %s: %w", path, err)
		}
		a.robust = true
	} else {
		a.base, err = unix.MmapPtr(int(f.Fd()), 0, nil, a.size, prot, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("lockreg: mapping %s: %w", path, err)
		}
	}
	a.hdr = (*header)(a.base)
	a.ord = (*orderHeader)(unsafe.Add(a.base, orderHeaderOff))
	return a, nil
}

// checkHeader validates a header read from a file of the given size and
// returns its geometry. Every field that places or sizes memory is checked
// against the layout this version computes, so a damaged header can never
// send a reader outside the mapping.
func checkHeader(h *header, oh *orderHeader, fileSize int64) (geometry, error) {
	bad := func(kind error, format string, args ...any) (geometry, error) {
		hint := "the run directory is damaged; start a new run"
		if kind == ErrVersion {
			hint = "read it with the lockwatch that matches the program's lockreg"
		}
		return geometry{}, &ArenaError{Kind: kind, Detail: fmt.Sprintf(format, args...), Hint: hint}
	}
	if string(h.magic[:]) != magic {
		return bad(ErrCorrupt, "bad magic %q, want %q", h.magic[:], magic)
	}
	if h.version != formatVersion {
		return bad(ErrVersion, "format version %d; this build reads version %d", h.version, formatVersion)
	}
	if h.headerSize != headerSize || h.procSize != procSize || h.lockSize != lockSize ||
		h.waiterSize != waiterSize || h.eventSize != eventSize {
		return bad(ErrCorrupt, "record sizes %d/%d/%d/%d/%d do not match version %d",
			h.headerSize, h.procSize, h.lockSize, h.waiterSize, h.eventSize, formatVersion)
	}
	if h.maxProcs == 0 || h.maxLocks == 0 || h.maxWaiters == 0 || h.maxProcs > 1<<20 || h.maxLocks > 1<<22 ||
		h.maxWaiters > 1<<22 || h.ringSlots < minRing || h.ringSlots > maxRing || h.ringSlots&(h.ringSlots-1) != 0 {
		return bad(ErrCorrupt, "impossible capacities procs=%d locks=%d waiters=%d events per lock=%d",
			h.maxProcs, h.maxLocks, h.maxWaiters, h.ringSlots)
	}
	if oh.edgeSize != edgeSize || oh.maxEdges == 0 || oh.maxEdges > limitEdges || oh.edgeSlots != edgeSlotsFor(oh.maxEdges) {
		return bad(ErrCorrupt, "impossible edge table: capacity %d, %d slots of %d bytes", oh.maxEdges, oh.edgeSlots, oh.edgeSize)
	}
	g := layout(h.maxProcs, h.maxLocks, h.maxWaiters, h.ringSlots).withEdges(oh.maxEdges)
	if oh.edgesOff != g.edgesOff {
		return bad(ErrCorrupt, "section table does not match its capacities")
	}
	if h.procsOff != g.procsOff || h.locksOff != g.locksOff || h.waitersOff != g.waitersOff ||
		h.eventsOff != g.eventsOff || h.maxEvents != g.maxEvents || h.indexSlots != g.indexSlots ||
		h.indexOff != g.indexOff || h.totalSize != g.total {
		return bad(ErrCorrupt, "section table does not match its capacities")
	}
	if g.total > maxArenaSize {
		return bad(ErrCorrupt, "size %d exceeds the maximum %d", g.total, maxArenaSize)
	}
	if uint64(fileSize) != g.total {
		return bad(ErrCorrupt, "file is %d bytes; its header says %d (truncated?)", fileSize, g.total)
	}
	if h.nlocks.Load() > h.maxLocks || h.nindexed.Load() > h.maxLocks {
		return bad(ErrCorrupt, "%d locks in use (%d indexed) of %d", h.nlocks.Load(), h.nindexed.Load(), h.maxLocks)
	}
	return g, nil
}
