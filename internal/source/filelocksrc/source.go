package filelocksrc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// The kinds of the locks a Source reads.
const (
	KindFlock = "flock" // flock(2): a lock of an open file description, on the whole file
	KindPOSIX = "posix" // fcntl(2) F_SETLK: a byte range, owned by a process
	KindOFD   = "ofd"   // fcntl(2) F_OFD_SETLK: a byte range, owned by an open file description
)

// DefaultMaxBytes bounds how much of /proc/locks a Source reads: some
// 1.3 million locks.
const DefaultMaxBytes = 128 << 20

// ErrTooLarge is returned by Read when /proc/locks is larger than
// Source.MaxBytes.
var ErrTooLarge = errors.New("filelocksrc: the lock table is larger than the limit")

// A Source reads the kernel's file locks: /proc/locks for the locks and
// the requests blocked on them, /proc/PID/fdinfo and /proc/PID/fd for who
// holds each one through which descriptor and on which file. Build it with
// New. A Source remembers what it saw in its previous read, to say how long
// a holder has been seen holding a lock (the kernel records no times), so
// keep one Source for a series of reads; it is safe for concurrent use.
type Source struct {
	// PID, when not 0, limits the snapshot to the locks that process holds
	// or waits for and, from them, the locks of the processes on the other
	// side that they wait for or that someone waits for, until no new
	// process is met: its knot of file locks (see scope). The others'
	// locks that nobody waits for are counted in a note.
	PID int
	// Proc is where procfs is mounted; "" is /proc.
	Proc string
	// Locks is the lock table's path; "" is Proc + "/locks".
	Locks string
	// MaxBytes bounds the lock table read; 0 is DefaultMaxBytes.
	MaxBytes int64
	// Limits bound the parse of the lock table.
	Limits Limits
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	mu   sync.Mutex
	last map[seenKey]seen // what the previous read saw, for Since
	// tables are the descriptor tables the previous read saw, at
	// tablesAt: a read soon after tries a lock's taker's descriptor that
	// was its reference first (tableReuse).
	tables   map[int]*fdTable
	tablesAt time.Time
	// pending is the lock table Involved read, for the next Read: the
	// kernel prints it a page per read(2), each page from the start of its
	// list, so at 10,000 locks a read of it costs tens of milliseconds.
	pending *Parsed
	buf     []byte // the lock table's read buffer, kept for the next read

	// read, when not nil, reads the lock table instead of the file (tests:
	// a table that changes between reads).
	read func() ([]byte, error)
}

// New returns a Source of the file locks pid is involved in (every lock of
// the machine when pid is 0).
func New(pid int) *Source { return &Source{PID: pid} }

func (s *Source) proc() procfs {
	return procfs{root: cmp.Or(s.Proc, "/proc")}
}

func (s *Source) locksPath() string { return cmp.Or(s.Locks, s.proc().root+"/locks") }

// readLocks reads the lock table whole, in large reads (the kernel fills
// each read under its lock: fewer reads, fewer moments for the table to
// change between them), into the buffer of the previous read when it is
// free (parsed entries keep nothing of it). done gives the buffer back.
func (s *Source) readLocks() (data []byte, done func(), err error) {
	if s.read != nil {
		data, err := s.read()
		return data, func() {}, err
	}
	max := s.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	f, err := os.Open(s.locksPath())
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	s.mu.Lock()
	buf := s.buf
	s.buf = nil
	s.mu.Unlock()
	done = func() {
		s.mu.Lock()
		s.buf = buf
		s.mu.Unlock()
	}
	// Each read(2) gets at most a page, and the kernel starts each from
	// the head of its list: reads into small buffers cost many times more.
	if int64(len(buf)) > max+1 || len(buf) < 256<<10 {
		buf = make([]byte, min(256<<10, max+1))
	}
	n := 0
	for {
		if n == len(buf) {
			if int64(n) > max {
				done()
				return nil, nil, fmt.Errorf("%w: %s holds more than %d bytes", ErrTooLarge, s.locksPath(), max)
			}
			buf = append(buf, make([]byte, min(int64(len(buf)), max+1-int64(len(buf))))...)
		}
		k, err := f.Read(buf[n:])
		n += k
		if err == io.EOF || (err == nil && k == 0) {
			break
		}
		if err != nil {
			done()
			return nil, nil, err // an *fs.PathError
		}
	}
	if int64(n) > max {
		done()
		return nil, nil, fmt.Errorf("%w: %s holds more than %d bytes", ErrTooLarge, s.locksPath(), max)
	}
	return buf[:n], done, nil
}

// Involved reports whether the process PID takes part in a file lock: the
// lock table names it, or it has a descriptor open on a locked file. It
// reads the table and that process's descriptors only: the cheap question
// to ask before a Read.
func (s *Source) Involved(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	data, done, err := s.readLocks()
	if err != nil {
		return false, err
	}
	parsed := Parse(data, s.Limits)
	done()
	s.mu.Lock()
	s.pending = &parsed // the next Read's table: read moments ago, as any read's is
	s.mu.Unlock()
	inodes := map[uint64]bool{}
	for _, e := range parsed.Entries {
		if e.PID == s.PID && s.PID > 0 {
			return true, nil
		}
		inodes[e.Inode] = true
	}
	refs, _, _ := s.proc().fdsOn(s.PID, inodes, make([]byte, 32<<10))
	return len(refs) > 0, nil
}

// tableReuse is how old the previous read's descriptor tables may be for
// a read to take from them the order in which it tries a lock's taker's
// descriptors (searchTaker): only an order, each one tried is proved by
// its fdinfo read afresh. No file, and no comparison, is taken from them:
// a descriptor closed and opened again at the same number is on another
// open file, which its number and inode cannot tell.
const tableReuse = 3 * time.Second

func (s *Source) recentTables(now time.Time) map[int]*fdTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tables == nil || now.Sub(s.tablesAt) > tableReuse || now.Before(s.tablesAt) {
		return nil
	}
	return s.tables
}

func (s *Source) keepTables(t map[int]*fdTable, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables, s.tablesAt = t, at
}

// block is a held lock and the requests blocked under it.
type block struct {
	root    Entry
	waiters []Entry
}

func group(es []Entry) []block {
	roots := 0
	for i := range es {
		if es[i].Depth == 0 {
			roots++
		}
	}
	out := make([]block, 0, roots)
	for _, e := range es {
		if e.Depth == 0 {
			out = append(out, block{root: e})
		} else if len(out) > 0 {
			out[len(out)-1].waiters = append(out[len(out)-1].waiters, e)
		}
	}
	return out
}

func kindOf(class string) string {
	switch class {
	case "FLOCK":
		return KindFlock
	case "OFDLCK":
		return KindOFD
	}
	return KindPOSIX // POSIX, and ACCESS: a POSIX lock taken to check mandatory locking
}

// lockID names a lock of the model: requests on the same kind, file and
// range wait for the same holders.
type lockID struct {
	kind         string
	major, minor uint32
	ino          uint64
	start, end   int64
}

func idOf(e *Entry) lockID {
	return lockID{kind: kindOf(e.Class), major: e.Major, minor: e.Minor, ino: e.Inode, start: e.Start, end: e.End}
}

// reader is one Read's view of /proc: caches, and what it could not read.
type reader struct {
	p     procfs
	fds   map[int][]fdRef // pid -> its descriptors on locked inodes
	byIno map[uint64][]fdRef
	info  map[[2]int]map[lockKey]struct{} // (pid, fd) -> its fdinfo lock lines
	stats map[int]*proc.Stat              // nil: gone
	buf   []byte                          // fdinfo's read buffer
	// scanned are the processes whose descriptors were read.
	scanned map[int]bool
	// tables are their descriptor tables; prev are the previous read's,
	// when it was recent (Source.tables).
	tables, prev map[int]*fdTable
	denied       []int // processes whose descriptors could not be read
	// partial are the processes whose descriptors were only compared with
	// the references of the knot's flock and OFD locks (share.go), not
	// stat'ed; same maps each of their descriptors found on a reference's
	// open file to the reference, whose fdinfo's flock and OFD lock lines
	// are its own.
	partial map[int]bool
	same    map[[2]int]fdRef
	want    map[uint64]bool   // the inodes the knot reads descriptors on
	posix   map[pidFile]fdRef // posixRef's answers
	facts2  []lockstate.Fact  // room for the two facts of each lock of build's, in one allocation
	notes   []string
	btime   time.Time
	// left counts the locks nobody waits for that the knot left out, by
	// the pid /proc/locks names as their owner or taker.
	left map[int]int
	// sketch says the blocks are the awaited ones only (Sketch): pid's
	// descriptors are compared with the awaited flock and OFD locks'
	// references rather than stat'ed one by one.
	sketch bool
}

// fdinfo returns the locks a descriptor's fdinfo lists, as a set: a
// descriptor that holds 10,000 byte ranges is read once and looked up in
// constant time.
func (r *reader) fdinfo(ref fdRef) map[lockKey]struct{} {
	k := [2]int{ref.pid, ref.fd}
	if set, ok := r.info[k]; ok {
		return set
	}
	set, err := r.p.fdinfoLocks(ref.pid, ref.fd, &r.buf)
	r.keepInfo(ref, set, err)
	return set
}

// keepInfo keeps what a descriptor's fdinfo listed, and says what could
// not be read of it.
func (r *reader) keepInfo(ref fdRef, set map[lockKey]struct{}, err error) {
	if err != nil && !notExist(err) && len(set) == 0 {
		r.notes = append(r.notes, fmt.Sprintf("pid %d fd %d: %v", ref.pid, ref.fd, err))
	}
	r.info[[2]int{ref.pid, ref.fd}] = set
}

func (r *reader) stat(pid int) *proc.Stat {
	if st, ok := r.stats[pid]; ok {
		return st
	}
	b, err := r.p.small(r.p.path(pid, "stat"))
	var st *proc.Stat
	if err == nil {
		if s, err := proc.ParseStat(pid, b); err == nil {
			st = &s
		}
	}
	r.stats[pid] = st
	return st
}

// Read reads the lock table once, and /proc for the processes it names.
// Its errors are the lock table's (an *fs.PathError, ErrTooLarge); what it
// could not read of the processes is said in the snapshot's notes.
func (s *Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	return s.readAs(ctx, false)
}

// Sketch is Read of the locks someone waits for only (lockstate.Sketcher):
// each with all its holders and waiters, found as Read finds them, and
// the processes that take part in them; the locks nobody waits for, which
// take part in no finding, are left out unread. For a process that holds
// 10,000 locks, one of them awaited, it reads the awaited one's holders,
// not 10,000 descriptors. A sketch that finds no awaited lock in the knot
// leaves the lock table it read to the next Read (which has no finding to
// confirm); one that finds some does not: the next Read reads the table
// again.
func (s *Source) Sketch(ctx context.Context) (*lockstate.Snapshot, error) {
	return s.readAs(ctx, true)
}

func (s *Source) readAs(ctx context.Context, sketch bool) (*lockstate.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	s.mu.Lock()
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	var parsed Parsed
	if pending != nil {
		parsed = *pending
	} else {
		data, done, err := s.readLocks()
		if err != nil {
			return nil, err
		}
		parsed = Parse(data, s.Limits)
		done()
	}
	taken := now()
	r := &reader{p: s.proc(), fds: map[int][]fdRef{}, byIno: map[uint64][]fdRef{}, info: map[[2]int]map[lockKey]struct{}{},
		stats: map[int]*proc.Stat{}, posix: map[pidFile]fdRef{}, scanned: map[int]bool{}, tables: map[int]*fdTable{}, prev: s.recentTables(taken),
		partial: map[int]bool{}, same: map[[2]int]fdRef{}, sketch: sketch}
	snap := &lockstate.Snapshot{Run: "file locks (" + s.locksPath() + ")", Taken: taken}
	if s.PID != 0 {
		snap.Run = fmt.Sprintf("file locks of pid %d (%s)", s.PID, s.locksPath())
	}
	if parsed.Errors > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d lines of %s could not be read and were left out with the requests under them (%d lines in all): %v",
			parsed.Errors, s.locksPath(), parsed.Dropped, oneLine(parsed.Err)))
	} else if parsed.Dropped > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d requests of %s were left out: the lock above them could not be read", parsed.Dropped, s.locksPath()))
	}
	if parsed.Over > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%s has %d more entries than the %d read: their locks are missing from this report",
			s.locksPath(), parsed.Over, len(parsed.Entries)))
	}
	blocks, leases := group(parsed.Entries), 0
	blocks = slices.DeleteFunc(blocks, func(b block) bool {
		switch b.root.Class {
		case "LEASE", "DELEG", "UNKNOWN":
			leases++
			return true
		}
		return b.root.NoInode // a lock on no file: nothing to name, nobody to find
	})
	if leases > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d leases and delegations are not shown (only flock, POSIX and OFD locks are)", leases))
	}
	if sketch {
		blocks = awaited(blocks)
	}
	blocks, err := r.knot(ctx, blocks, s.PID)
	if err != nil {
		return nil, err
	}
	if sketch && len(blocks) == 0 {
		// Nothing for a finding: the next Read, the report's, may as well
		// take this table (read moments ago, as any read's is).
		s.mu.Lock()
		s.pending = &parsed
		s.mu.Unlock()
	}
	r.btime = bootTime(r.p)
	if len(r.left) > 0 {
		snap.Notes = append(snap.Notes, leftNote(r.left))
	}
	out := r.build(blocks, snap)
	s.since(r, out, taken)
	if len(snap.Locks) > 0 {
		snap.Notes = append(snap.Notes, sinceNote)
	}
	s.keepTables(r.tables, taken)
	if len(r.denied) > 0 {
		slices.Sort(r.denied)
		snap.Notes = append(snap.Notes, fmt.Sprintf("the open files of %d processes could not be read (permission denied: another user's; run lockwatch as root to see them): a flock or OFD lock they hold through an inherited descriptor is not shown as theirs: %s",
			len(r.denied), pidList(r.denied)))
	}
	if len(r.notes) > 0 {
		sort := slices.Compact(slices.Sorted(slices.Values(r.notes)))
		if len(sort) > 5 {
			sort = append(sort[:5], fmt.Sprintf("and %d more", len(sort)-5))
		}
		snap.Notes = append(snap.Notes, strings.Join(sort, "; "))
	}
	return snap, nil
}

// knot returns the blocks of pid's knot (every block for pid 0), with the
// descriptors of the processes in it read, and counts the locks it leaves
// out (r.left). Reading every process's descriptors is most of a read's
// time on a busy machine (a fstatat per descriptor), and only a flock or
// OFD lock needs it: its holders are whoever shares its open file
// description, which /proc/locks does not name. A knot of POSIX locks is
// found from the pids /proc/locks names, and only their descriptors are
// read (for the files' paths); as soon as the knot takes in a flock or OFD
// lock, or a lock with a request the kernel names no pid for, every
// process is read.
func (r *reader) knot(ctx context.Context, blocks []block, pid int) ([]block, error) {
	inodes := make(map[uint64]bool, len(blocks))
	shared := false
	for i := range blocks {
		b := &blocks[i]
		inodes[b.root.Inode] = true
		shared = shared || b.shared()
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	if pid == 0 {
		if shared {
			r.want = inodes
			return blocks, r.scanAll(ctx, inodes)
		}
		pids := map[int]bool{}
		for i := range blocks {
			r.eachParty(&blocks[i], func(p int) { pids[p] = true })
		}
		r.scanSome(slices.Sorted(maps.Keys(pids)), inodes)
		return blocks, nil
	}
	all := false
	if r.sketch && slices.ContainsFunc(blocks, func(b block) bool { return b.shared() }) {
		// The awaited locks only: who shares their open files, pid
		// included, is found by comparing every descriptor with theirs
		// (a kcmp each), not by naming each descriptor's file (a
		// holder of 10,000 flock'ed files has 10,000).
		r.want = inodes
		if err := r.scanShared(ctx, blocks, inodes); err != nil {
			return nil, err
		}
		all = true
	}
	r.scanTarget(pid, blocks, inodes) // read already when compared
	// Another process takes part only through a lock someone waits for,
	// or one pid takes part in: only its descriptors on those files
	// matter (a holder of 10,000 locks, one of them awaited, has one).
	want := map[uint64]bool{}
	for i := range blocks {
		if b := &blocks[i]; len(b.waiters) > 0 || b.root.PID == pid {
			want[b.root.Inode] = true
		}
	}
	for _, ref := range r.fds[pid] {
		want[ref.ino] = true
	}
	r.want = want
	x := indexBlocks(blocks)
	for {
		k := r.scope(blocks, x, pid)
		if !all && slices.ContainsFunc(k.kept, func(i int) bool { return blocks[i].shared() }) {
			if err := r.scanShared(ctx, blocks, want); err != nil {
				return nil, err
			}
			all = true
			continue // who else has those files open may widen the knot
		}
		var more []int
		for _, p := range k.met {
			if _, ok := r.scanned[p]; !ok {
				more = append(more, p)
			}
		}
		if len(more) == 0 {
			r.left = k.left
			out := make([]block, len(k.kept))
			for i, b := range k.kept {
				out[i] = blocks[b]
			}
			return out, nil
		}
		r.scanSome(more, want)
	}
}

// awaited keeps the blocks of the locks someone waits for: those with
// requests under them, and the other holders' blocks of the same lock
// (the kernel lists a lock held by several readers once per holder, and a
// request under one of them).
func awaited(blocks []block) []block {
	ids := map[indexID]bool{}
	for i := range blocks {
		if len(blocks[i].waiters) > 0 {
			ids[indexIDOf(&blocks[i].root)] = true
		}
	}
	if len(ids) == 0 {
		return nil
	}
	out := make([]block, 0, len(ids))
	for i := range blocks {
		if ids[indexIDOf(&blocks[i].root)] {
			out = append(out, blocks[i])
		}
	}
	return out
}

// shared reports whether the processes behind a block's lock are found
// only from who has its file open: a flock or OFD lock (held by every
// process sharing its open file description), or a lock with a request
// the kernel names no pid for (an OFD request).
func (b *block) shared() bool {
	return kindOf(b.root.Class) != KindPOSIX || slices.ContainsFunc(b.waiters, func(w Entry) bool { return w.PID <= 0 })
}

// scanSome reads the descriptors of some processes on the locked inodes.
func (r *reader) scanSome(pids []int, inodes map[uint64]bool) {
	buf := make([]byte, 32<<10)
	for _, pid := range pids {
		if _, ok := r.scanned[pid]; ok {
			continue
		}
		refs, t, err := r.p.fdsOn(pid, inodes, buf)
		r.add(pid, refs, t, err)
	}
}

// byInfoMin is the fewest descriptors scanTarget reads by their fdinfo
// files.
const byInfoMin = 64

// scanTarget reads the descriptors on the locked inodes of pid, the
// process whose knot is read. When most of them are on files whose flock
// or OFD lock /proc/locks says pid took (a holder of 10,000 flock'ed
// files), it reads each one's fdinfo rather than stat'ing it: the fdinfo
// names the file's inode (as the lock table does) and lists the locks held
// through the descriptor, the proof that holders needs of each anyway, so
// each descriptor costs one read, not a stat and a read. A descriptor on a
// locked inode whose fdinfo lists none of its locks is stat'ed for its
// device.
func (r *reader) scanTarget(pid int, blocks []block, inodes map[uint64]bool) {
	if _, ok := r.scanned[pid]; ok {
		return
	}
	dir, t, err := r.p.fdList(pid, make([]byte, 32<<10))
	if err != nil {
		r.add(pid, nil, nil, err)
		return
	}
	defer unix.Close(dir)
	taken := map[uint64]bool{}
	for i := range blocks {
		if b := &blocks[i].root; b.PID == pid && kindOf(b.Class) != KindPOSIX {
			taken[b.Inode] = true
		}
	}
	if len(t.fds) < byInfoMin || 2*len(taken) < len(t.fds) {
		r.add(pid, onInodes(pid, dir, t, inodes), t, nil)
		return
	}
	type result struct {
		ino uint64
		set map[lockKey]struct{}
		err error
	}
	results := make([]result, len(t.fds))
	bufs := make([][]byte, scanWorkers)
	dirs := make([]*procDirs, scanWorkers)
	for w := range dirs {
		dirs[w] = newProcDirs(r.p, "fdinfo")
		defer dirs[w].close()
	}
	inParallel(len(t.fds), func(w, i int) {
		results[i].ino, results[i].set, results[i].err = r.p.fdinfoIn(dirs[w], pid, t.fds[i], &bufs[w], inodes)
	})
	var refs []fdRef
	for i, fd := range t.fds {
		res := &results[i]
		if res.set == nil || !inodes[res.ino] {
			if res.err != nil && !notExist(res.err) {
				r.notes = append(r.notes, fmt.Sprintf("pid %d fd %d: %v", pid, fd, res.err))
			}
			continue // closed meanwhile (or unreadable); or on no locked file
		}
		ref := fdRef{pid: pid, fd: fd, ino: res.ino}
		found := false
		for k := range res.set {
			if k.ino == res.ino {
				ref.dev, found = unix.Mkdev(k.major, k.minor), true
				break
			}
		}
		if !found {
			f := statFd(dir, fd)
			if f[1] != res.ino {
				continue // closed, or another file, meanwhile
			}
			ref.dev = f[0]
		}
		r.keepInfo(ref, res.set, res.err)
		refs = append(refs, ref)
	}
	r.add(pid, refs, t, nil)
}

// add records what reading pid's descriptors found.
func (r *reader) add(pid int, refs []fdRef, t *fdTable, err error) {
	r.scanned[pid] = true
	if t != nil {
		r.tables[pid] = t
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			r.denied = append(r.denied, pid)
		}
		return // gone meanwhile, or a kernel thread
	}
	if len(refs) > 0 {
		r.fds[pid] = refs
		for _, ref := range refs {
			r.byIno[ref.ino] = append(r.byIno[ref.ino], ref)
		}
	}
}

// scanWorkers bounds the goroutines that read every process's descriptors,
// and the fdinfo files and links of a read.
const scanWorkers = 4

// inParallel calls f(w, i) for each i below n, on up to scanWorkers
// goroutines (w is the goroutine's number, for its buffers) when n is
// large enough to be worth them.
func inParallel(n int, f func(w, i int)) {
	workers := min(scanWorkers, runtime.GOMAXPROCS(0), max(n/64, 1))
	if workers == 1 {
		for i := range n {
			f(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				f(w, i)
			}
		})
	}
	wg.Wait()
}

// prefetch reads, a few at once, the fdinfo of every descriptor on the
// file of a flock or OFD lock among blocks: holders reads them all, one
// per holder of 10,000 flock'ed files.
func (r *reader) prefetch(blocks []block) {
	var refs []fdRef
	seen := map[[2]int]bool{}
	for i := range blocks {
		if kindOf(blocks[i].root.Class) == KindPOSIX {
			continue
		}
		for _, ref := range r.byIno[blocks[i].root.Inode] {
			k := [2]int{ref.pid, ref.fd}
			if _, ok := r.same[k]; ok {
				continue // its reference's fdinfo is its own
			}
			if _, ok := r.info[k]; !ok && !seen[k] {
				seen[k] = true
				refs = append(refs, ref)
			}
		}
	}
	type result struct {
		set map[lockKey]struct{}
		err error
	}
	results := make([]result, len(refs))
	bufs := make([][]byte, scanWorkers)
	dirs := make([]*procDirs, scanWorkers)
	for w := range dirs {
		dirs[w] = newProcDirs(r.p, "fdinfo")
		defer dirs[w].close()
	}
	inParallel(len(refs), func(w, i int) {
		results[i].set, results[i].err = r.p.fdinfoLocksIn(dirs[w], refs[i].pid, refs[i].fd, &bufs[w])
	})
	for i, ref := range refs {
		r.keepInfo(ref, results[i].set, results[i].err)
	}
}

// links reads the path of each file in refs from the first of its
// descriptors whose link can be read, a few at once, into paths.
func (r *reader) links(refs map[fileKey][]fdRef, paths map[fileKey]string) {
	files := slices.Collect(maps.Keys(refs))
	got := make([]string, len(files))
	dirs := make([]*procDirs, scanWorkers)
	for w := range dirs {
		dirs[w] = newProcDirs(r.p, "fd")
		defer dirs[w].close()
	}
	inParallel(len(files), func(w, i int) {
		for _, ref := range refs[files[i]] {
			if p, err := r.p.linkIn(dirs[w], ref.pid, ref.fd); err == nil {
				got[i] = p
				return
			}
		}
	})
	for i, f := range files {
		if got[i] != "" {
			paths[f] = got[i]
		}
	}
}

// unscanned lists the processes whose descriptors were not read yet.
func (r *reader) unscanned() ([]int, error) {
	all, err := r.p.pids()
	if err != nil {
		return nil, fmt.Errorf("cannot list the processes in %s: %w", r.p.root, err)
	}
	var pids []int
	for _, pid := range all {
		if _, ok := r.scanned[pid]; !ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// scanAll reads the descriptors of every process on the locked inodes, a
// few processes at once.
func (r *reader) scanAll(ctx context.Context, inodes map[uint64]bool) error {
	pids, err := r.unscanned()
	if err != nil {
		return err
	}
	type result struct {
		refs []fdRef
		t    *fdTable
		err  error
	}
	results := make([]result, len(pids))
	workers := min(scanWorkers, runtime.GOMAXPROCS(0), max(len(pids)/64, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for i := w; i < len(pids); i += workers {
				if i%256 == w && ctx.Err() != nil {
					return
				}
				results[i].refs, results[i].t, results[i].err = r.p.fdsOn(pids[i], inodes, buf)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, pid := range pids {
		r.add(pid, results[i].refs, results[i].t, results[i].err)
	}
	return nil
}

// blockIndex says which blocks each process and each inode take part in,
// for scope: for each key the head of a list threaded through nodes, so
// that a table of 10,000 locks costs three maps and one array, not a slice
// per lock.
type blockIndex struct {
	byPID map[int]int32     // owner or waiter pid -> blocks
	byIno map[uint64]int32  // inode -> blocks
	byID  map[indexID]int32 // the model's lock -> its blocks (one per holder of a shared lock)
	nodes []indexNode
	// shared marks the blocks whose lock has other blocks too (byID's
	// lists of two or more): only theirs are looked up in byID.
	shared []bool
}

// indexID is a lockID with its kind as a number: hashed without a string.
type indexID struct {
	kind         uint8
	major, minor uint32
	ino          uint64
	start, end   int64
}

func indexIDOf(e *Entry) indexID {
	var k uint8
	switch kindOf(e.Class) {
	case KindFlock:
		k = 1
	case KindOFD:
		k = 2
	}
	return indexID{kind: k, major: e.Major, minor: e.Minor, ino: e.Inode, start: e.Start, end: e.End}
}

// indexNode is a block in one of blockIndex's lists; next is the list's
// next node, -1 at its end.
type indexNode struct{ block, next int32 }

func indexBlocks(blocks []block) blockIndex {
	x := blockIndex{byPID: map[int]int32{}, byIno: make(map[uint64]int32, len(blocks)), byID: make(map[indexID]int32, len(blocks)),
		nodes: make([]indexNode, 0, 3*len(blocks)), shared: make([]bool, len(blocks))}
	for i := range blocks {
		b := &blocks[i]
		if prev := pushIndex(&x, x.byID, indexIDOf(&b.root), i); prev >= 0 {
			x.shared[i], x.shared[x.nodes[prev].block] = true, true
		}
		if b.root.PID > 0 {
			pushIndex(&x, x.byPID, b.root.PID, i)
		}
		for _, w := range b.waiters {
			if w.PID > 0 && w.PID != b.root.PID {
				pushIndex(&x, x.byPID, w.PID, i)
			}
		}
		pushIndex(&x, x.byIno, b.root.Inode, i)
	}
	return x
}

// pushIndex adds block i to the list of key k in m, one of x's maps, and
// returns the node that was the list's head (-1: the list was empty).
func pushIndex[K comparable](x *blockIndex, m map[K]int32, k K, i int) int32 {
	head, ok := m[k]
	if !ok {
		head = -1
	}
	x.nodes = append(x.nodes, indexNode{block: int32(i), next: head})
	m[k] = int32(len(x.nodes) - 1)
	return head
}

// indexed yields the blocks of key k in m, one of x's maps.
func indexed[K comparable](x *blockIndex, m map[K]int32, k K) iter.Seq[int] {
	return func(yield func(int) bool) {
		n, ok := m[k]
		for ok && n >= 0 {
			if !yield(int(x.nodes[n].block)) {
				return
			}
			n = x.nodes[n].next
		}
	}
}

// knotScope is what scope found: the blocks of a knot, in order, its
// processes, and the locks of those processes it left out, by pid.
type knotScope struct {
	kept []int
	met  []int
	left map[int]int
}

// scope finds pid's knot: every lock pid takes part in (holds, as the
// owner /proc/locks names or through a descriptor on the file of a flock
// or OFD lock, or waits for); then, of each process met there, the locks
// it waits for and those it holds that someone waits for, until no new
// process is met, with every holder of each lock kept (readers). A lock
// nobody waits for takes part in no finding (a file lock dies with its
// holder), so another process's is left out and
// counted, by the pid /proc/locks names: a holder of 10,000 locks costs a
// report on one of its waiters nothing more.
func (r *reader) scope(blocks []block, x blockIndex, pid int) knotScope {
	kept := make([]bool, len(blocks))
	met := map[int]bool{pid: true}
	queue := []int{pid}
	var keep func(i int)
	keep = func(i int) {
		if kept[i] {
			return
		}
		kept[i] = true
		r.eachParty(&blocks[i], func(p int) {
			if !met[p] {
				met[p] = true
				queue = append(queue, p)
			}
		})
		// The same lock held by others too (readers: the kernel lists
		// each holder's lock apart, and a request under one of them).
		if x.shared[i] {
			for j := range indexed(&x, x.byID, indexIDOf(&blocks[i].root)) {
				keep(j)
			}
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for i := range indexed(&x, x.byPID, p) {
			if p == pid || len(blocks[i].waiters) > 0 {
				keep(i)
			}
		}
		for _, ref := range r.fds[p] {
			for i := range indexed(&x, x.byIno, ref.ino) {
				if b := &blocks[i]; b.shared() && (p == pid || len(b.waiters) > 0) {
					keep(i)
				}
			}
		}
	}
	var k knotScope
	for i, in := range kept {
		if in {
			k.kept = append(k.kept, i)
		} else if o := blocks[i].root.PID; met[o] {
			if k.left == nil {
				k.left = map[int]int{}
			}
			k.left[o]++
		}
	}
	k.met = slices.Sorted(maps.Keys(met))
	return k
}

// eachParty calls f with each process that takes part in a block: its
// owner pid and waiters by pid and, for a block whose parties are found
// from who has its file open (shared), every process with a descriptor on
// its file (a possible holder through a shared open file description, or
// an OFD waiter); a process may come more than once.
func (r *reader) eachParty(b *block, f func(pid int)) {
	if b.root.PID > 0 {
		f(b.root.PID)
	}
	for _, w := range b.waiters {
		if w.PID > 0 {
			f(w.PID)
		}
	}
	if !b.shared() {
		return
	}
	for _, ref := range r.byIno[b.root.Inode] {
		f(ref.pid)
	}
}

// holding is who holds a block's lock, and through which descriptors.
type holding struct {
	pids []int
	refs []fdRef
}

// holders finds who holds a block's lock. A POSIX lock belongs to the
// process /proc/locks names (its descriptor on the file is looked for only
// to name the file). A flock or OFD lock belongs to an open file
// description: every process with a descriptor whose fdinfo lists the lock
// holds it (a child that inherited the descriptor as much as its parent).
func (r *reader) holders(b *block) holding {
	var h holding
	e := &b.root
	if kindOf(e.Class) == KindPOSIX {
		if e.PID > 0 {
			h.pids = []int{e.PID}
			if ref, ok := r.posixRef(e); ok {
				h.refs = []fdRef{ref}
			}
		}
		return h
	}
	for _, ref := range r.byIno[e.Inode] {
		if r.lists(ref, e) {
			h.refs = append(h.refs, ref)
			if !slices.Contains(h.pids, ref.pid) {
				h.pids = append(h.pids, ref.pid)
			}
		}
	}
	return h
}

// pidFile is a process and a file.
type pidFile struct {
	pid int
	f   fileKey
}

// fileKey names a file as /proc/locks does: the device of its file
// system's superblock, and its inode.
type fileKey struct {
	major, minor uint32
	ino          uint64
}

func fileOf(e *Entry) fileKey { return fileKey{major: e.Major, minor: e.Minor, ino: e.Inode} }

// posixRef is a descriptor of the owner of a POSIX lock on its file, to
// name the file by: one whose device and inode are the file's (a file
// system's st_dev is its superblock's device, except on btrfs and
// overlayfs), else one whose fdinfo lists the lock. One per process and
// file: a process holding 10,000 ranges of a file has them looked up once.
func (r *reader) posixRef(e *Entry) (fdRef, bool) {
	k := pidFile{pid: e.PID, f: fileOf(e)}
	if ref, ok := r.posix[k]; ok {
		return ref, ref.pid != 0
	}
	var found fdRef
	r.classify(e.PID)
	for _, ref := range r.fds[e.PID] {
		if ref.ino == e.Inode && ref.onFile(k.f) {
			found = ref
			break
		}
	}
	if found.pid == 0 {
		for _, ref := range r.fds[e.PID] {
			if ref.ino == e.Inode && r.lists(ref, e) {
				found = ref
				break
			}
		}
		if found.pid == 0 {
			// Not cached: another lock of this process on the file may be
			// listed by another descriptor of it.
			return found, false
		}
	}
	r.posix[k] = found
	return found, true
}

// onFile reports whether the descriptor's device and inode are f's.
func (ref fdRef) onFile(f fileKey) bool {
	return ref.ino == f.ino && unix.Major(ref.dev) == f.major && unix.Minor(ref.dev) == f.minor
}

// lists reports whether a descriptor's fdinfo lists the lock e: for a
// flock or OFD lock, the fdinfo of the reference whose open file the
// descriptor was found to be, when it was (share.go).
func (r *reader) lists(ref fdRef, e *Entry) bool {
	if kindOf(e.Class) != KindPOSIX {
		if same, ok := r.same[[2]int{ref.pid, ref.fd}]; ok {
			ref = same
		}
	}
	_, ok := r.fdinfo(ref)[keyOf(e)]
	return ok
}

// party is a process of the snapshot, or false if it is gone (or its
// stat unreadable): its locks changed while they were read.
func (r *reader) party(pid int) (lockstate.Party, bool) {
	st := r.stat(pid)
	if st == nil {
		return lockstate.Party{}, false
	}
	return lockstate.Party{ID: procid.ID{PID: pid, Start: st.Start}, Goroutine: lockstate.WholeProcess}, true
}

// model is one lock of the snapshot while it is built.
type model struct {
	id      lockID
	lock    lockstate.Lock
	ino     uint64
	dev     [2]uint32
	direct  map[int]bool // pids of requests right under a held lock: woken when it is released (nil: none)
	taker   []int        // flock: the pids /proc/locks names as having taken it
	holders []int
	one     [1]int // holders' first array
}

func (m *model) setDirect(pid int) {
	if m.direct == nil {
		m.direct = map[int]bool{}
	}
	m.direct[pid] = true
}

// build turns the blocks into locks: one per kind, file and range, with
// every holder and every waiter.
func (r *reader) build(blocks []block, snap *lockstate.Snapshot) []*model {
	// One allocation for all models and one for their first holders: a
	// knot may have a million locks.
	slab := make([]model, 0, len(blocks))
	firsts := make([]lockstate.Holder, 0, len(blocks))
	out := make([]*model, 0, len(blocks))
	at := make(map[indexID]*model, len(blocks)) // by lockID, with its kind a number: hashed without a string
	paths := map[fileKey]string{}
	procs := map[int]bool{}
	gone := 0
	unknownOFD := map[uint64][]waitRef{} // inode -> OFD requests without a pid
	r.prefetch(blocks)
	pathRefs := map[fileKey][]fdRef{} // files to name, and the holders' descriptors on them
	for i := range blocks {
		b := &blocks[i]
		h := r.holders(b)
		key := indexIDOf(&b.root)
		m := at[key]
		if m == nil {
			id := idOf(&b.root)
			slab = append(slab, model{id: id, lock: lockstate.Lock{Kind: id.kind}, ino: b.root.Inode, dev: [2]uint32{b.root.Major, b.root.Minor}})
			m = &slab[len(slab)-1]
			at[key] = m
			out = append(out, m)
		}
		if b.root.Class == "FLOCK" && b.root.PID > 0 && !slices.Contains(m.taker, b.root.PID) {
			m.taker = append(m.taker, b.root.PID)
		}
		if f := fileOf(&b.root); len(h.refs) > 0 {
			if _, ok := pathRefs[f]; !ok {
				pathRefs[f] = h.refs
			}
		}
		held := false
		for _, pid := range h.pids {
			p, ok := r.party(pid)
			if !ok {
				gone++
				continue
			}
			held = true
			if !slices.Contains(m.holders, pid) {
				if m.holders == nil {
					m.one[0] = pid
					m.holders = m.one[:1:1]
				} else {
					m.holders = append(m.holders, pid)
				}
				h := lockstate.Holder{Party: p, Read: b.root.Type == "READ"}
				if m.lock.Holders == nil && len(firsts) < cap(firsts) {
					firsts = append(firsts, h)
					m.lock.Holders = firsts[len(firsts)-1 : len(firsts) : len(firsts)]
				} else {
					m.lock.Holders = append(m.lock.Holders, h)
				}
				procs[pid] = true
			}
		}
		if !held {
			if len(h.pids) > 0 {
				continue // its holder died meanwhile: the lock went with it
			}
			// Nobody this reader can see holds it: a descriptor of a
			// process it may not read, or one passed in a socket.
			m.lock.Facts.Extra = append(m.lock.Facts.Extra, lockstate.Fact{Name: "holder",
				Value: fmt.Sprintf("unknown: no process readable here has %s open (pid %d in %s)", describe(&b.root), b.root.PID, "the lock table")})
			m.lock.Holders = append(m.lock.Holders, lockstate.Holder{Party: lockstate.Party{Goroutine: lockstate.WholeProcess}, Read: b.root.Type == "READ"})
		}
		for _, w := range b.waiters {
			if w.PID <= 0 {
				unknownOFD[w.Inode] = append(unknownOFD[w.Inode], waitRef{m: m, e: w})
				continue
			}
			p, ok := r.party(w.PID)
			if !ok {
				gone++
				continue
			}
			if w.Depth == 1 {
				m.setDirect(w.PID)
			}
			m.lock.Waiters = append(m.lock.Waiters, lockstate.Waiter{Party: p, Read: w.Type == "READ"})
			procs[w.PID] = true
		}
	}
	r.inferOFD(unknownOFD, procs, snap)
	r.links(pathRefs, paths)
	// Names: the file's path, from a holder's descriptor (or any on the
	// same device and inode), and the range for a byte-range lock.
	names := make(map[string]bool, len(out))
	inodes := map[fileKey]string{}
	r.facts2 = make([]lockstate.Fact, 2*len(out))
	var name []byte
	for _, m := range out {
		f := fileKey{major: m.dev[0], minor: m.dev[1], ino: m.ino}
		path, ok := paths[f]
		if !ok {
			for _, ref := range r.byIno[m.ino] {
				if !ref.onFile(f) {
					continue // maybe another file system's inode of that number
				}
				if p, err := r.p.link(ref.pid, ref.fd); err == nil {
					path, ok = p, true
					break
				}
			}
		}
		if !ok {
			path = "inode " + inodeName(m.dev, m.ino)
		}
		paths[f] = path
		name = append(name[:0], path...)
		if m.id.kind != KindFlock {
			name = appendRange(append(name, " ["...), m.id.start, m.id.end)
			name = append(name, ']')
		}
		ino, ok := inodes[f]
		if !ok {
			ino = inodeName(m.dev, m.ino)
			inodes[f] = ino
		}
		if names[string(name)] {
			name = append(append(append(name, " (inode "...), ino...), ')')
		}
		m.lock.Name = string(name)
		names[m.lock.Name] = true
		r.facts(m, ino)
	}
	if gone > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d holders or waiters of file locks had exited by the time their process was read: left out (the lock table changed while it was read)", gone))
	}
	for _, pid := range slices.Sorted(maps.Keys(procs)) {
		st := r.stat(pid)
		if st == nil {
			continue
		}
		p := lockstate.Process{ID: procid.ID{PID: pid, Start: st.Start}, Command: r.command(pid, st)}
		if !r.btime.IsZero() {
			p.Started = r.btime.Add(time.Duration(st.Start) * time.Second / 100)
		}
		snap.Processes = append(snap.Processes, p)
	}
	snap.Locks = slices.Grow(snap.Locks, len(out))
	for _, m := range out {
		snap.Locks = append(snap.Locks, m.lock)
	}
	return out
}

// waitRef is a request /proc/locks lists without a pid (an OFD lock's).
type waitRef struct {
	m *model
	e Entry
}

// inferOFD names the processes behind OFD requests, which the kernel lists
// with pid -1: the threads blocked in fcntl(F_OFD_SETLKW) on a descriptor
// of the same file. A request is given a process only when the count of
// such threads on that file equals the count of such requests, all on one
// lock and of one type: then the set of waiting processes is exact. The
// lock's facts say that the waiter was inferred, and from what.
func (r *reader) inferOFD(unknown map[uint64][]waitRef, procs map[int]bool, snap *lockstate.Snapshot) {
	for _, ino := range slices.Sorted(maps.Keys(unknown)) {
		reqs := unknown[ino]
		var found []struct {
			pid, tid, fd int
		}
		for _, ref := range r.byIno[ino] {
			if unix.Major(ref.dev) != reqs[0].e.Major || unix.Minor(ref.dev) != reqs[0].e.Minor {
				continue // another file system's inode of the same number
			}
			tids, err := r.p.tids(ref.pid)
			if err != nil {
				continue
			}
			for _, tid := range tids {
				t, err := r.p.thread(ref.pid, tid, false)
				if err != nil {
					continue
				}
				if fd, ofd, ok := t.lockWait(); ok && ofd && fd == ref.fd && r.p.still(ref) {
					found = append(found, struct{ pid, tid, fd int }{ref.pid, tid, fd})
				}
			}
		}
		one := true
		for _, q := range reqs[1:] {
			one = one && q.m == reqs[0].m && q.e.Type == reqs[0].e.Type
		}
		if len(found) != len(reqs) || !one {
			snap.Notes = append(snap.Notes, fmt.Sprintf("%d OFD lock requests on inode %02x:%02x:%d have no pid in the lock table (the kernel does not name OFD waiters) and %d threads were found blocked in fcntl(F_OFD_SETLKW) on that file: they are not shown as waiters",
				len(reqs), reqs[0].e.Major, reqs[0].e.Minor, ino, len(found)))
			for _, q := range reqs {
				q.m.lock.Facts.Extra = append(q.m.lock.Facts.Extra, lockstate.Fact{Name: "waiter", Value: "unknown: an OFD request (the kernel names no pid)"})
			}
			continue
		}
		for i, q := range reqs {
			f := found[i]
			p, ok := r.party(f.pid)
			if !ok {
				continue
			}
			if q.e.Depth == 1 {
				q.m.setDirect(f.pid)
			}
			q.m.lock.Waiters = append(q.m.lock.Waiters, lockstate.Waiter{Party: p, Read: q.e.Type == "READ"})
			q.m.lock.Facts.Extra = append(q.m.lock.Facts.Extra, lockstate.Fact{Name: "waiter " + strconv.Itoa(f.pid),
				Value: fmt.Sprintf("inferred: the kernel lists this OFD request without a pid; thread %d of pid %d is blocked in fcntl(F_OFD_SETLKW) on fd %d, this file", f.tid, f.pid, f.fd)})
			procs[f.pid] = true
		}
	}
}

// facts are what the lock table and /proc say of a lock beyond its
// holders and waiters: its type and range, and who took a flock or OFD
// lock that others hold through the same open file description.
func (r *reader) facts(m *model, inode string) {
	var first *lockstate.Holder
	if len(m.lock.Holders) > 0 {
		first = &m.lock.Holders[0]
	}
	typ := "WRITE"
	if first != nil && first.Read {
		typ = "READ"
	}
	var extra []lockstate.Fact
	if len(m.lock.Facts.Extra) == 0 && len(r.facts2) >= 2 {
		extra, r.facts2 = r.facts2[:0:2], r.facts2[2:] // most locks have these two facts only
	} else {
		extra = make([]lockstate.Fact, 0, 2+len(m.lock.Facts.Extra))
	}
	extra = append(extra, lockstate.Fact{Name: "type", Value: typeName(m.lock.Kind, typ)},
		lockstate.Fact{Name: "inode", Value: inode})
	if m.lock.Kind != KindPOSIX && len(m.holders) > 1 {
		extra = append(extra, lockstate.Fact{Name: "shared", Value: fmt.Sprintf("one open file description held by %s (released when one of them unlocks it or all of them close it)", pidList(m.holders))})
	}
	for _, t := range m.taker {
		if slices.Contains(m.holders, t) || len(m.holders) == 0 {
			continue // a holder; or none found, which the holder fact says, with the taker
		}
		how := "now gone"
		if st := r.stat(t); st != nil {
			how = "which no longer has it open: it closed it, or the pid is another process now"
		}
		extra = append(extra, lockstate.Fact{Name: "inherited", Value: fmt.Sprintf("taken by pid %d (%s); held now by %s through the same open file description (a descriptor inherited across fork and exec, or passed)",
			t, how, pidList(m.holders))})
	}
	m.lock.Facts.Extra = append(extra, m.lock.Facts.Extra...)
}

// typeName is the type fact's value of a lock of kind held for reading
// or writing (typ): "FLOCK WRITE".
func typeName(kind, typ string) string {
	read := typ == "READ"
	switch {
	case kind == KindFlock && read:
		return "FLOCK READ"
	case kind == KindFlock:
		return "FLOCK WRITE"
	case kind == KindPOSIX && read:
		return "POSIX READ"
	case kind == KindPOSIX:
		return "POSIX WRITE"
	case kind == KindOFD && read:
		return "OFD READ"
	case kind == KindOFD:
		return "OFD WRITE"
	}
	return ""
}

// inodeName is a file as /proc/locks names it: "fe:00:9978082".
func inodeName(dev [2]uint32, ino uint64) string {
	b := make([]byte, 0, 32)
	b = appendHex2(b, dev[0])
	b = append(b, ':')
	b = appendHex2(b, dev[1])
	b = append(b, ':')
	return string(strconv.AppendUint(b, ino, 10))
}

// appendHex2 is %02x.
func appendHex2(b []byte, v uint32) []byte {
	if v < 0x10 {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, uint64(v), 16)
}

// command is a process's command line (its name if it has none), bounded.
func (r *reader) command(pid int, st *proc.Stat) string {
	b, err := r.p.small(r.p.path(pid, "cmdline"))
	if err != nil || len(b) == 0 {
		return st.Comm
	}
	s := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// bootTime is when the machine booted, from /proc/stat's btime; zero if
// unreadable.
func bootTime(p procfs) time.Time {
	b, err := p.small(p.root + "/stat")
	if err != nil {
		return time.Time{}
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}

func describe(e *Entry) string {
	return fmt.Sprintf("the %s lock on inode %s:%d", strings.ToLower(e.Class), e.Dev(), e.Inode)
}

// leftNote says which locks the knot left out: those of its processes
// that nobody waits for.
func leftNote(left map[int]int) string {
	pids := slices.SortedFunc(maps.Keys(left), func(a, b int) int { return cmp.Or(cmp.Compare(left[b], left[a]), cmp.Compare(a, b)) })
	n, parts := 0, make([]string, 0, min(len(pids), 4))
	for i, p := range pids {
		n += left[p]
		if i < 3 {
			parts = append(parts, fmt.Sprintf("%d of pid %d", left[p], p))
		}
	}
	if len(pids) > 3 {
		parts = append(parts, fmt.Sprintf("%d of %d more processes", n-left[pids[0]]-left[pids[1]]-left[pids[2]], len(pids)-3))
	}
	return fmt.Sprintf("%d file locks of the other processes here are not shown: nobody waits for them, so they take part in no finding (%s; `lockwatch attach PID` of their holder lists them)",
		n, strings.Join(parts, ", "))
}

// pidList is "pid 1", "pids 1 2 and 3" (the first 10, then how many
// more).
func pidList(pids []int) string {
	if len(pids) == 0 {
		return "no pid"
	}
	s := make([]string, 0, min(len(pids), 11))
	for _, p := range pids[:min(len(pids), 10)] {
		s = append(s, strconv.Itoa(p))
	}
	if len(pids) > 10 {
		s = append(s, fmt.Sprintf("%d more", len(pids)-10))
	}
	if len(s) == 1 {
		return "pid " + s[0]
	}
	return "pids " + strings.Join(s[:len(s)-1], " ") + " and " + s[len(s)-1]
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
