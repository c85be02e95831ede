// Package hostile builds the run directories a reader of runs must survive
// in bounded time and memory: arenas at the largest capacities lockreg
// accepts, filled to the brim (every process slot, lock, waiter and event
// ring in use), and oversized files beside them (info files, stack dictionaries with
// one enormous line, a gzip bomb for a goroutine profile).
//
// It writes the arena (format version 5: an event ring per lock, a name
// index, a fencing counter per lock) byte by byte from the format in docs/registry-format.md, without
// lockreg's code, so that what it builds is
// what any process of the run, or a damaged or hostile one, could leave; it
// checks its layout against lockreg.Size. It is for tests and benchmarks
// (the reliability suite, docs/reliability.md).
//
//	dir := filepath.Join(t.TempDir(), "run")
//	err := hostile.Write(dir, hostile.Cases["locks"])
package hostile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockreg"
)

// A Spec says what arena to build, and what to put beside it.
type Spec struct {
	// Capacities of the arena, as lockreg.Options: Events is the budget of
	// event slots, which gives each lock a ring of Events/Locks slots
	// rounded down to a power of two in [4, 1024] (RingSlots).
	Procs, Locks, Waiters, Events uint32

	// Process-table entries in use (state running), locks named (and in
	// the name index), waiter records (all waiting for lock 0).
	UsedProcs, UsedLocks, UsedWaiters int

	// LockEvents is the number of events recorded on each named lock,
	// alternately a holder event (acquire, release) and a waiter event
	// (wait): the lock's holder ring and waiter ring then each hold the
	// last RingSlots/2 of theirs.
	LockEvents uint64

	// OwnerDied: every named lock is held by a dead holder and marked
	// FUTEX_OWNER_DIED, each by a holder of its own. Otherwise lock 0 (if
	// any) is held by a dead holder, with waiters.
	OwnerDied bool

	// InfoFiles is the number of processes (the first UsedProcs) given an
	// info file of InfoSize bytes.
	InfoFiles int
	InfoSize  int64
	// InfoEmptyArgs makes the info files' arguments empty strings ("",
	// three bytes each) rather than one long one: small to read, large
	// to decode.
	InfoEmptyArgs bool

	// Dicts is the number of dead holders (of the first locks) given a
	// stack dictionary of DictSize bytes whose first line, DictLine bytes
	// long, is the stack the lock record names.
	Dicts              int
	DictSize, DictLine int64
}

// Cases are the audit's hostile runs (issue 8): each at a limit lockreg
// accepts, each of which once took a reader seconds and gigabytes.
var Cases = map[string]Spec{
	// 16,384 locks, each with the largest ring (1,024 events), every ring
	// full and wrapped four times: 1<<24 events held (ordinary Lock/Unlock
	// and contention fill them so).
	"events": {Procs: 1024, Locks: 1 << 14, Waiters: 4096, Events: 1 << 24, UsedProcs: 8, UsedLocks: 1 << 14, LockEvents: 1 << 12},
	// 4M waiter records, all waiting for a lock whose holder died.
	"waiters": {Procs: 1024, Locks: 4096, Waiters: 1 << 22, Events: 1 << 16, UsedProcs: 1, UsedLocks: 1, UsedWaiters: 1 << 22},
	// 1M process-table entries, all running (so: died without closing).
	"procs": {Procs: 1 << 20, Locks: 4096, Waiters: 4096, Events: 1 << 16, UsedProcs: 1 << 20, UsedLocks: 1},
	// 2M locks (the largest power of two whose arena, with rings of the
	// smallest size and the name index, stays under lockreg's 1 GiB),
	// every one held by a holder that died: OWNER_DIED.
	"locks": {Procs: 1024, Locks: 1 << 21, Waiters: 4096, Events: 1 << 16, UsedProcs: 1, UsedLocks: 1 << 21, OwnerDied: true},
	// Four 200 MiB info files.
	"info": {Procs: 1024, Locks: 4096, Waiters: 4096, Events: 1 << 16, UsedProcs: 4, UsedLocks: 1, InfoFiles: 4, InfoSize: 200 << 20},
	// Four dead holders, each with a dictionary under the 64 MiB cap made
	// of one 60 MiB line: the stack its lock record names.
	"dicts": {Procs: 1024, Locks: 4096, Waiters: 4096, Events: 1 << 16, UsedProcs: 4, UsedLocks: 4, OwnerDied: true,
		Dicts: 4, DictSize: 63 << 20, DictLine: 60 << 20},
}

// Small returns the case name at the size the default tests use: every
// table and file still several times past the reader's limits (so a reader
// without them fails the tests' memory bounds), but quick to write.
func Small(name string) Spec {
	s := Cases[name]
	switch name {
	case "events":
		s.Locks, s.UsedLocks, s.Events = 256, 256, 1<<18
	case "waiters":
		s.Waiters, s.UsedWaiters = 1<<17, 1<<17
	case "procs":
		s.Procs, s.UsedProcs = 1<<16, 1<<16
	case "locks":
		s.Locks, s.UsedLocks = 1<<17, 1<<17
	case "info":
		s.InfoSize = 4 << 20
	case "dicts":
		s.DictSize, s.DictLine = 4<<20, 2<<20
	}
	return s
}

// DeadPID is the pid of the i-th process the generator invents: above the
// kernel's largest pid_max (1<<22), so that no process can have it and
// every one of them is provably dead, yet within the lock word's 30 bits.
func DeadPID(i int) uint32 { return 1<<29 + uint32(i) }

// Layout of format version 5 (docs/registry-format.md).
const (
	formatVersion = 5

	headerSize  = 4096
	procSize    = 64
	lockSize    = 192
	waiterSize  = 64
	eventSize   = 64
	ringHdrSize = 64
	edgeSize    = 64

	// The edge table, as lockreg.Size sizes it: the default capacity and
	// its slots (a power of two, twice the capacity), described at
	// orderHeaderOff in the header page.
	maxEdges       = 8192
	edgeSlots      = 2 * maxEdges
	orderHeaderOff = 1024

	waitersBit   = 0x80000000
	ownerDiedBit = 0x40000000
)

func alignPage(n uint64) uint64 { return (n + 4095) &^ 4095 }

type geometry struct {
	procsOff, locksOff, waitersOff, eventsOff, indexOff, edgesOff, total uint64
	ring, ringSize                                                       uint64 // event slots per lock, bytes per ring
	indexSlots                                                           uint32
}

// RingSlots returns the event slots of each lock's ring in an arena with
// s's capacities: Events/Locks, rounded down to a power of two, clamped to
// [4, 1024].
func (s Spec) RingSlots() int {
	per := uint64(s.Events) / uint64(max(s.Locks, 1))
	p := uint64(4)
	for p < 1024 && 2*p <= per {
		p <<= 1
	}
	return int(p)
}

// HeldEvents returns the events an arena built from s holds, all rings
// together: each named lock's rings keep the last RingSlots/2 holder
// events and the last RingSlots/2 waiter events.
func (s Spec) HeldEvents() int {
	h, w := lockEvents(s.LockEvents)
	half := uint64(s.RingSlots() / 2)
	return s.UsedLocks * int(min(h, half)+min(w, half))
}

// lockEvents splits n events of a lock into holder and waiter events: they
// alternate, a holder event first.
func lockEvents(n uint64) (holder, waiter uint64) { return n - n/2, n / 2 }

func layout(s Spec) geometry {
	g := geometry{ring: uint64(s.RingSlots()), indexSlots: 1}
	for g.indexSlots < 2*s.Locks {
		g.indexSlots <<= 1
	}
	g.ringSize = ringHdrSize + g.ring*eventSize
	off := uint64(headerSize)
	g.procsOff, off = off, alignPage(off+uint64(s.Procs)*procSize)
	g.locksOff, off = off, alignPage(off+uint64(s.Locks)*lockSize)
	g.waitersOff, off = off, alignPage(off+uint64(s.Waiters)*waiterSize)
	g.eventsOff, off = off, alignPage(off+uint64(s.Locks)*g.ringSize)
	g.indexOff, off = off, alignPage(off+uint64(g.indexSlots)*4)
	g.edgesOff, off = off, alignPage(off+edgeSlots*edgeSize)
	g.total = off
	return g
}

// nameHash is FNV-1a-32, the name index's hash.
func nameHash(name string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return h
}

// lockName is the name of named lock i.
func lockName(i int) string { return fmt.Sprintf("lock-%d", i) }

var ne = binary.NativeEndian

// Write builds the run directory dir (mode 0700, its parent must exist) as
// s says. The arena's pages are written in order, once; unused records
// stay holes of the file (zeros).
func Write(dir string, s Spec) error {
	g := layout(s)
	if want := lockreg.Size(int(s.Procs), int(s.Locks), int(s.Waiters), int(s.Events)); want != int64(g.total) {
		return fmt.Errorf("hostile: layout of %d bytes, lockreg.Size says %d: the format changed", g.total, want)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, arena.ArenaFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(g.total)); err != nil {
		return err
	}
	w := &sectionWriter{f: f}

	var h [orderHeaderOff + 24]byte // the header and the edge table's entry
	copy(h[0:], "LOCKWREG")
	ne.PutUint32(h[8:], formatVersion)
	ne.PutUint32(h[12:], headerSize)
	ne.PutUint64(h[16:], g.total)
	ne.PutUint32(h[24:], s.Procs)
	ne.PutUint32(h[28:], procSize)
	ne.PutUint64(h[32:], g.procsOff)
	ne.PutUint32(h[40:], s.Locks)
	ne.PutUint32(h[44:], lockSize)
	ne.PutUint64(h[48:], g.locksOff)
	ne.PutUint32(h[56:], s.Waiters)
	ne.PutUint32(h[60:], waiterSize)
	ne.PutUint64(h[64:], g.waitersOff)
	ne.PutUint32(h[72:], s.Locks*uint32(g.ring))
	ne.PutUint32(h[76:], eventSize)
	ne.PutUint64(h[80:], g.eventsOff)
	ne.PutUint64(h[88:], 1) // created: any time
	ne.PutUint32(h[96:], DeadPID(0))
	ne.PutUint32(h[100:], uint32(os.Getuid()))
	ne.PutUint32(h[108:], uint32(s.UsedLocks))
	ne.PutUint32(h[120:], uint32(g.ring))
	ne.PutUint32(h[124:], uint32(s.UsedLocks)) // all indexed
	ne.PutUint32(h[128:], g.indexSlots)
	ne.PutUint64(h[136:], g.indexOff)
	ne.PutUint32(h[orderHeaderOff:], maxEdges)
	ne.PutUint32(h[orderHeaderOff+4:], edgeSlots)
	ne.PutUint32(h[orderHeaderOff+8:], edgeSize)
	ne.PutUint64(h[orderHeaderOff+16:], g.edgesOff)
	if err := w.at(0, h[:]); err != nil {
		return err
	}

	// Processes: pid DeadPID(i), running; claimed once (generation 1), the
	// record complete (sequence even) and written for that claim (tag).
	for i := 0; i < s.UsedProcs; i++ {
		var r [procSize]byte
		owner := 1<<32 | uint64(DeadPID(i))
		ne.PutUint32(r[0:], 1)
		ne.PutUint32(r[4:], DeadPID(i))
		ne.PutUint64(r[16:], 100+uint64(i))
		ne.PutUint64(r[24:], 1)
		ne.PutUint64(r[40:], owner)
		ne.PutUint64(r[48:], owner)
		if err := w.at(g.procsOff+uint64(i)*procSize, r[:]); err != nil {
			return err
		}
	}
	// Locks.
	holderEvents, waiterEvents := lockEvents(s.LockEvents)
	for i := 0; i < s.UsedLocks; i++ {
		var r [lockSize]byte
		holder := -1
		switch {
		case s.OwnerDied:
			holder = i % max(s.UsedProcs, 1)
			if i < s.Dicts {
				holder = i
			}
			ne.PutUint32(r[0:], ownerDiedBit)
		case i == 0 && s.UsedWaiters > 0:
			holder = 0
			ne.PutUint32(r[0:], DeadPID(0)|waitersBit)
		}
		ne.PutUint32(r[4:], 1)
		ne.PutUint64(r[8:], (holderEvents+1)/2) // the fencing counter: the token of the last of its acquires
		if holder >= 0 {
			ne.PutUint32(r[20:], uint32(holder)+1)
			ne.PutUint32(r[24:], DeadPID(holder))
			ne.PutUint64(r[32:], 100+uint64(holder))
			ne.PutUint64(r[40:], uint64(i)+1)  // goroutine
			ne.PutUint64(r[48:], uint64(i)+1)  // stack id
			ne.PutUint64(r[56:], uint64(i)+10) // since
		}
		ne.PutUint32(r[28:], uint32(holderEvents)) // the holder ring's head
		name := lockName(i)
		r[64] = byte(len(name))
		copy(r[65:], name)
		if err := w.at(g.locksOff+uint64(i)*lockSize, r[:]); err != nil {
			return err
		}
	}
	// Waiters, all for lock 0, each its own dead process.
	for i := 0; i < s.UsedWaiters; i++ {
		var r [waiterSize]byte
		pid := DeadPID(s.UsedProcs + i)
		ne.PutUint32(r[4:], pid)
		ne.PutUint32(r[8:], 1)
		ne.PutUint64(r[16:], 100+uint64(s.UsedProcs+i))
		ne.PutUint64(r[24:], uint64(i)+1)
		ne.PutUint64(r[32:], 0)
		ne.PutUint64(r[40:], uint64(i)+10)
		ne.PutUint32(r[48:], pid)
		if err := w.at(g.waitersOff+uint64(i)*waiterSize, r[:]); err != nil {
			return err
		}
	}
	// Event rings: lock i's history is holder event 0, waiter event 0,
	// holder event 1, ...; holder event j saw waiter ticket j. Each half
	// holds its last ring/2 tickets.
	if s.LockEvents > 0 {
		half := g.ring / 2
		for i := 0; i < s.UsedLocks; i++ {
			ring := g.eventsOff + uint64(i)*g.ringSize
			var rh [ringHdrSize]byte
			ne.PutUint64(rh[0:], waiterEvents)
			if err := w.at(ring, rh[:]); err != nil {
				return err
			}
			holder, waiter := i%max(s.UsedProcs, 1), (i+1)%max(s.UsedProcs, 1)
			for k := uint64(0); k < g.ring; k++ {
				var r [eventSize]byte
				var pid int
				var t uint64 // the ticket this slot holds in the last lap
				if k < half {
					if holderEvents <= k {
						continue
					}
					t = holderEvents - half + (k+half-(holderEvents-half)%half)%half
					if holderEvents < half {
						t = k
					}
					pid = holder
					ne.PutUint64(r[0:], 2*t+2)
					ne.PutUint32(r[8:], uint32(1+t%2)<<24|uint32(t)&(1<<24-1)) // acquire, release; the waiter ticket seen
					ne.PutUint64(r[32:], 2*t+10)
				} else {
					if waiterEvents <= k-half {
						continue
					}
					slot := k - half
					t = waiterEvents - half + (slot+half-(waiterEvents-half)%half)%half
					if waiterEvents < half {
						t = slot
					}
					pid = waiter
					ne.PutUint64(r[0:], 2*t+2)
					ne.PutUint32(r[8:], 3<<24) // wait
					ne.PutUint64(r[32:], 2*t+11)
				}
				ne.PutUint32(r[12:], DeadPID(pid))
				ne.PutUint64(r[16:], 100+uint64(pid))
				ne.PutUint64(r[24:], t/2+1)
				ne.PutUint64(r[40:], uint64(i)+1)
				if k < half {
					ne.PutUint64(r[48:], t/2+1) // the hold's token: acquire t and release t+1 share it
				}
				if err := w.at(ring+ringHdrSize+k*eventSize, r[:]); err != nil {
					return err
				}
			}
		}
	}
	// The name index: lock i at its name's hash, probing linearly.
	if s.UsedLocks > 0 {
		index := make([]uint32, g.indexSlots)
		for i := 0; i < s.UsedLocks; i++ {
			e := nameHash(lockName(i)) & (g.indexSlots - 1)
			for index[e] != 0 {
				e = (e + 1) & (g.indexSlots - 1)
			}
			index[e] = uint32(i) + 1
		}
		b := make([]byte, 4*len(index))
		for e, v := range index {
			ne.PutUint32(b[4*e:], v)
		}
		if err := w.at(g.indexOff, b); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}

	for i := 0; i < s.InfoFiles; i++ {
		if err := writeInfo(dir, i, s.InfoSize, s.InfoEmptyArgs); err != nil {
			return err
		}
	}
	for i := 0; i < s.Dicts; i++ {
		if err := writeDict(dir, i, s.DictSize, s.DictLine); err != nil {
			return err
		}
	}
	return nil
}

// sectionWriter writes records at increasing offsets through one buffer.
type sectionWriter struct {
	f   *os.File
	buf []byte
	off uint64 // file offset of buf[0]
}

func (w *sectionWriter) at(off uint64, b []byte) error {
	if len(w.buf) > 0 && off != w.off+uint64(len(w.buf)) || len(w.buf) >= 4<<20 {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.off = off
	}
	w.buf = append(w.buf, b...)
	return nil
}

func (w *sectionWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(w.buf, int64(w.off))
	w.buf = w.buf[:0]
	return err
}

// fileName is a process's file name in the run directory.
func fileName(i int, ext string) string {
	return fmt.Sprintf("p-%d-%d.%s", DeadPID(i), 100+i, ext)
}

// writeInfo writes process i's info file: valid JSON of size bytes, most of
// it one argument.
func writeInfo(dir string, i int, size int64, empty bool) error {
	f, err := os.OpenFile(filepath.Join(dir, fileName(i, "json")), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	head := fmt.Sprintf(`{"pid":%d,"start":%d,"exe":"/hostile","role":"hostile","robust":true,"go":"go1","args":["`, DeadPID(i), 100+i)
	tail := `"]}` + "\n"
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.WriteString(head)
	n := max(size-int64(len(head)+len(tail)), 0)
	if empty {
		for ; n >= 3; n -= 3 {
			bw.WriteString(`","`)
		}
	} else if _, err := io.CopyN(bw, repeat('a'), n); err != nil {
		f.Close()
		return err
	}
	bw.WriteString(tail)
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeDict writes process i's stack dictionary, size bytes: first the
// stack its lock names (id i+1), line bytes long (one frame with a huge
// function name), then ordinary lines.
func writeDict(dir string, i int, size, line int64) error {
	f, err := os.OpenFile(filepath.Join(dir, fileName(i, "stacks")), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	head := fmt.Sprintf(`{"id":"%x","frames":[{"func":"`, i+1)
	tail := `","file":"/hostile.go","line":1}]}` + "\n"
	bw.WriteString(head)
	if _, err := io.CopyN(bw, repeat('f'), max(line-int64(len(head)+len(tail)), 0)); err != nil {
		f.Close()
		return err
	}
	bw.WriteString(tail)
	written := line
	// Then ordinary lines, as Dict.Add writes them.
	var b []byte
	for id := 1 << 20; written < size; id++ {
		b = fmt.Appendf(b[:0], `{"id":"%x","frames":[{"func":"main.f","file":"/f.go","line":%d}]}`+"\n", id, id)
		if written+int64(len(b)) > size {
			break
		}
		bw.Write(b)
		written += int64(len(b))
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// repeat is an endless reader of one byte.
type repeat byte

func (r repeat) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r)
	}
	return len(b), nil
}

// GzipBomb returns a gzip stream of about size/1000 bytes that inflates to
// size bytes of zeros (rounded up to 1 MiB): one compressed member of 1
// MiB of zeros, repeated (gzip readers read concatenated members as one
// stream). It starts like a gzipped goroutine profile.
func GzipBomb(size int64) []byte {
	const member = 1 << 20
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	io.CopyN(zw, repeat(0), member)
	zw.Close()
	n := int((size + member - 1) / member)
	return bytes.Repeat(one.Bytes(), n)
}

// Names returns the names of Cases, sorted.
func Names() []string {
	out := make([]string, 0, len(Cases))
	for k := range Cases {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AmplifyingProfile returns a gzipped goroutine profile (pprof protobuf) of
// size bytes inflated, most of it empty samples (two bytes each): the
// audit's 16,333 bytes of gzip that inflate to just under 16 MiB, some
// 8.4 million samples, which a decoder that builds before it counts turns
// into more than a gigabyte.
func AmplifyingProfile(size int) []byte {
	var raw bytes.Buffer
	// sample_type {type: 1 ("goroutine"), unit: 2 ("count")}, the string
	// table ("", "goroutine", "count"), then empty samples.
	raw.Write([]byte{0x0a, 0x04, 0x08, 0x01, 0x10, 0x02})
	for _, s := range []string{"", "goroutine", "count"} {
		raw.WriteByte(0x32)
		raw.WriteByte(byte(len(s)))
		raw.WriteString(s)
	}
	for raw.Len()+2 <= size {
		raw.Write([]byte{0x12, 0x00})
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(raw.Bytes())
	zw.Close()
	return z.Bytes()
}

// TinyGoroutines returns traceback text of about size bytes: goroutines of
// one frame each, each in a function of its own (so none group together),
// some 40 bytes a goroutine where a real one takes 700: the audit's 63 MiB
// of 1.48 million goroutines.
func TinyGoroutines(size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString("panic: hostile\n\n")
	for id := 1; ; id++ {
		n := b.Len()
		fmt.Fprintf(&b, "goroutine %d [s]:\nf%d()\n\t/x:1\n\n", id, id)
		if b.Len() > size {
			b.Truncate(n)
			return b.Bytes()
		}
	}
}

// RandomBytes returns size bytes of a fixed pseudo-random sequence (the
// same for the same seed), as from /dev/urandom.
func RandomBytes(size int, seed uint64) []byte {
	b := make([]byte, size)
	x := seed | 1
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13 // xorshift64
		x ^= x >> 7
		x ^= x << 17
		ne.PutUint64(b[i:], x)
	}
	return b
}

// AmplifyingTrace returns an execution trace (the format of Go 1.26) of
// about size bytes whose one generation is a stack table of distinct
// one-frame stacks, some 8 bytes each, which the trace parser
// (golang.org/x/exp/trace) turns into some 100 bytes of tables each before
// it finds that their strings are missing: 32 MiB would build more than
// 400 MiB.
func AmplifyingTrace(size int) []byte {
	b := make([]byte, 0, size+64<<10)
	b = append(b, "go 1.26 trace\x00\x00\x00"...)
	data := make([]byte, 0, 64<<10)
	id := uint64(1)
	for len(b) < size {
		data = append(data[:0], 2) // EvStacks
		for len(data) < 60<<10 {
			// EvStack: id, 1 frame of pc, function, file, line.
			data = append(data, 3)
			data = binary.AppendUvarint(data, id)
			data = append(data, 1)
			data = binary.AppendUvarint(data, 0x400000+id)
			data = append(data, 1, 2, 1)
			id++
		}
		// EvEventBatch: generation, M, time, size, data.
		b = append(b, 1, 1, 0, 0)
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
	}
	return b
}
