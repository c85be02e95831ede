package filelocksrc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Who shares the open file of a flock lock is known only from every
// descriptor of the machine: any process may hold one (a child that
// inherited it, a process it was passed to over a socket). Naming each
// descriptor's file costs an fstatat through /proc (a path lookup in
// /proc, the link followed, the file stat'ed); a knot whose flock locks
// are few needs less: whether each descriptor is one of a few open files.
// kcmp(2) KCMP_FILE answers that for two descriptors in one system call
// (it compares the kernel's file pointers, and orders them), a fifth of an
// fstatat's cost. So scanShared first proves, for each flock lock of the
// knot, a reference: a descriptor whose fdinfo lists the lock (the
// kernel prints a flock or OFD lock under every descriptor of the open
// file that holds it, and only under those), found among the descriptors
// already read or those of the process /proc/locks names as its taker;
// then compares every other descriptor of the machine with the references.
// A descriptor that is the same open file as a reference holds exactly the
// locks the reference's fdinfo lists (the fdinfo of either prints the same
// flock and OFD lock lines); one that is not holds none of them, even on
// the same file (another open of it). It falls back to naming every
// descriptor's file (scanAll) whenever that is not proved: a lock with no
// taker (an OFD lock, pid -1) or whose taker no longer has it open (it
// exited, leaving it to a child; an mmap keeps its open file alive with no
// descriptor), two locks alike, an OFD request (its waiter is found from
// the threads blocked on any descriptor of the file), more than maxRefs
// locks, or kcmp refused (no kernel support, a seccomp filter).

// maxRefs is the most flock and OFD locks scanShared compares descriptors
// with: each costs a comparison per descriptor (a binary search, in the
// kernel's order of open files, costs one per doubling).
const maxRefs = 8

// refID names a reference across reads: its descriptor and the lock it
// was proved to hold.
type refID struct {
	pid, fd int
	key     lockKey
}

// ofdRef is a reference: a descriptor proved to be on the open file of a
// lock of the knot.
type ofdRef struct {
	id  refID
	ref fdRef
}

// kcmpFileType is kcmp(2)'s KCMP_FILE.
const kcmpFileType = 0

// kcmpFile compares the open files of two descriptors: 0 the same, 1 the
// first is ordered before the second, 2 after, 3 unordered (kcmp(2)).
func kcmpFile(pid1, fd1, pid2, fd2 int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpFileType, uintptr(fd1), uintptr(fd2), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// errCompare says a process's descriptors cannot be compared (kcmp
// refused): its files are stat'ed instead.
var errCompare = errors.New("kcmp refused")

// scanShared finds every descriptor of the machine on the open file of a
// flock or OFD lock of the knot among blocks (those on the inodes in
// want), by comparison with references when they can be proved, else by
// naming every descriptor's file (scanAll).
func (r *reader) scanShared(ctx context.Context, blocks []block, want map[uint64]bool) error {
	refs, known, ok := r.findRefs(blocks, want)
	if !ok {
		return r.scanAll(ctx, want)
	}
	return r.scanCompare(ctx, refs, known, want)
}

// findRefs proves a reference for each flock and OFD lock on the inodes
// in want, sorted in the kernel's order of open files. known are the
// descriptors of the takers it read looking for them, by pid. ok is false
// when a lock has none, or comparison cannot be used.
func (r *reader) findRefs(blocks []block, want map[uint64]bool) (refs []ofdRef, known map[int]*takerFds, ok bool) {
	var targets []*Entry
	keys := map[lockKey]bool{}
	for i := range blocks {
		b := &blocks[i]
		if !want[b.root.Inode] {
			continue
		}
		if slices.ContainsFunc(b.waiters, func(w Entry) bool { return w.PID <= 0 }) {
			return nil, nil, false // an OFD request: its waiter is found from who has the file open
		}
		if kindOf(b.root.Class) == KindPOSIX {
			continue
		}
		k := keyOf(&b.root)
		if b.root.PID <= 0 || keys[k] || len(targets) == maxRefs {
			return nil, nil, false // no taker named; two locks alike, each on its own open file; too many
		}
		keys[k] = true
		targets = append(targets, &b.root)
	}
	if len(targets) == 0 {
		return nil, nil, false
	}
	known = map[int]*takerFds{}
	for _, e := range targets {
		ref, found := fdRef{}, false
		for _, c := range r.byIno[e.Inode] { // the descriptors read already (PID's)
			if r.lists(c, e) {
				ref, found = c, true
				break
			}
		}
		if !found {
			if _, ok := r.scanned[e.PID]; ok {
				return nil, nil, false // its taker's descriptors were read: it has none on it
			}
			if ref, found = r.searchTaker(e, known); !found {
				return nil, nil, false // its taker no longer has it open (or has exited)
			}
		}
		refs = append(refs, ofdRef{id: refID{pid: ref.pid, fd: ref.fd, key: keyOf(e)}, ref: ref})
	}
	// In the kernel's order (a binary search per descriptor); a kcmp
	// refused, two locks of one open file or no order: stat every file.
	var cmpErr error
	slices.SortFunc(refs, func(a, b ofdRef) int {
		c, err := kcmpFile(a.ref.pid, a.ref.fd, b.ref.pid, b.ref.fd)
		switch {
		case err != nil || c == 0 || c == 3:
			cmpErr = cmp3Error(err, c)
			return 0
		case c == 1:
			return -1
		}
		return 1
	})
	if cmpErr != nil {
		return nil, nil, false
	}
	if len(refs) == 1 {
		// Sorting one compared nothing: is kcmp there at all?
		if c, err := kcmpFile(refs[0].ref.pid, refs[0].ref.fd, refs[0].ref.pid, refs[0].ref.fd); err != nil || c != 0 {
			return nil, nil, false
		}
	}
	return refs, known, true
}

func cmp3Error(err error, c int) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("kcmp: %d", c)
}

// takerFds are the descriptors of a lock's taker that searchTaker read:
// their list, and the files of those it stat'ed.
type takerFds struct {
	t     *fdTable
	files map[int][2]uint64
}

// searchTaker looks among the descriptors of the process /proc/locks names
// as a lock's taker for one whose fdinfo lists the lock: first the one
// that was the reference at the previous read, then each descriptor on the
// lock's inode, in order. What it read of them goes into known.
func (r *reader) searchTaker(e *Entry, known map[int]*takerFds) (fdRef, bool) {
	pid := e.PID
	dir, t, err := r.p.fdList(pid, make([]byte, 32<<10))
	if err != nil {
		return fdRef{}, false
	}
	defer unix.Close(dir)
	k := known[pid]
	if k == nil {
		k = &takerFds{files: map[int][2]uint64{}}
		known[pid] = k
	}
	k.t = t // the latest list: the one the files were stat'ed from
	files := k.files
	try := func(fd int) (fdRef, bool) {
		f, ok := files[fd]
		if !ok {
			f = statFd(dir, fd)
			files[fd] = f
		}
		if f[1] != e.Inode {
			return fdRef{}, false
		}
		c := fdRef{pid: pid, fd: fd, dev: f[0], ino: f[1]}
		return c, r.lists(c, e)
	}
	key := keyOf(e)
	if prev := r.prev[pid]; prev != nil && t.same(prev) {
		for _, id := range prev.refs {
			if id.pid == pid && id.key == key && slices.Contains(t.fds, id.fd) {
				if c, ok := try(id.fd); ok {
					return c, true
				}
			}
		}
	}
	for _, fd := range t.fds {
		if c, ok := try(fd); ok {
			return c, true
		}
	}
	return fdRef{}, false
}

// scanCompare reads every process's descriptors not read yet, a few
// processes at once, comparing each with the references; a process whose
// descriptors kcmp may not compare has its files stat'ed (fdsOn).
func (r *reader) scanCompare(ctx context.Context, refs []ofdRef, known map[int]*takerFds, want map[uint64]bool) error {
	pids, err := r.unscanned()
	if err != nil {
		return err
	}
	ids := make([]refID, len(refs))
	inodes := map[uint64]bool{}
	for i, ref := range refs {
		ids[i] = ref.id
		inodes[ref.ref.ino] = true
	}
	type result struct {
		refs     []fdRef
		same     []int8 // refs[i]'s reference
		t        *fdTable
		err      error
		compared bool
	}
	results := make([]result, len(pids))
	bufs := make([][]byte, scanWorkers)
	inParallel(len(pids), func(w, i int) {
		if i%256 == w && ctx.Err() != nil {
			return
		}
		if bufs[w] == nil {
			bufs[w] = make([]byte, 32<<10)
		}
		pid := pids[i]
		res := &results[i]
		res.refs, res.same, res.t, res.err = r.compareFds(pid, refs, ids, inodes, known[pid], bufs[w]) // known: only read here
		if errors.Is(res.err, errCompare) {
			res.refs, res.t, res.err = r.p.fdsOn(pid, want, bufs[w])
			return
		}
		res.compared = true
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if slices.ContainsFunc(results, func(res result) bool { return errors.Is(res.err, errRefGone) }) {
		return r.scanAll(ctx, want)
	}
	for i, pid := range pids {
		res := &results[i]
		r.add(pid, res.refs, res.t, res.err)
		if !res.compared || res.err != nil {
			continue
		}
		r.partial[pid] = true
		for j, ref := range res.refs {
			r.same[[2]int{ref.pid, ref.fd}] = refs[res.same[j]].ref
		}
	}
	return nil
}

// compareFds lists pid's descriptors and finds those on the open file of
// a reference (refs, in the kernel's order; ids names them): a binary
// search by kcmp per descriptor, but none for a descriptor whose file is
// known (stat'ed in this read looking for a taker's reference) to be on
// none of the references' inodes. Nothing is taken from the previous
// read: a descriptor closed and opened again at the same number is on
// another open file, and no cheaper check than the comparison proves it
// is not (its number and inode do not). A taker's descriptors are the
// list searchTaker read. errCompare: kcmp refused.
func (r *reader) compareFds(pid int, refs []ofdRef, ids []refID, inodes map[uint64]bool, known *takerFds, buf []byte) ([]fdRef, []int8, *fdTable, error) {
	var t *fdTable
	var files map[int][2]uint64
	if known != nil {
		t, files = &fdTable{start: known.t.start, fds: known.t.fds}, known.files
	} else {
		dir, list, err := r.p.fdList(pid, buf)
		if err != nil {
			return nil, nil, nil, err
		}
		unix.Close(dir)
		t = list
	}
	t.refs = ids
	// A process is not compared with its own references: it holds their
	// locks through them already (its other descriptors on the same open
	// file would add no holder).
	others, at := refs, []int(nil)
	if slices.ContainsFunc(refs, func(ref ofdRef) bool { return ref.ref.pid == pid }) {
		others = nil
		for j, ref := range refs {
			if ref.ref.pid != pid {
				others, at = append(others, ref), append(at, j)
			}
		}
	}
	var out []fdRef
	var which []int8
	matched := func(i, j int) {
		ref := refs[j].ref
		out = append(out, fdRef{pid: pid, fd: t.fds[i], dev: ref.dev, ino: ref.ino})
		which = append(which, int8(j))
	}
	for i, fd := range t.fds {
		if j := slices.IndexFunc(refs, func(ref ofdRef) bool { return ref.ref.pid == pid && ref.ref.fd == fd }); j >= 0 {
			matched(i, j)
			continue
		}
		if f, ok := files[fd]; ok && !inodes[f[1]] {
			continue
		}
		j, err := search(pid, fd, others)
		if err != nil {
			switch {
			case errors.Is(err, errRefGone), errors.Is(err, unix.ESRCH):
				return nil, nil, nil, err // a reference closed; or pid gone
			case errors.Is(err, unix.EBADF):
				continue // closed meanwhile
			}
			return nil, nil, nil, errCompare
		}
		if j >= 0 {
			if at != nil {
				j = at[j]
			}
			matched(i, j)
		}
	}
	return out, which, t, nil
}

// errRefGone says a reference was closed while descriptors were compared
// with it: the comparison is read again by naming every file.
var errRefGone = errors.New("a reference descriptor was closed")

// search finds the reference whose open file pid's descriptor fd is, by
// a binary search in the kernel's order: its index, or -1.
func search(pid, fd int, refs []ofdRef) (int, error) {
	lo, hi := 0, len(refs)
	for lo < hi {
		mid := (lo + hi) / 2
		ref := refs[mid].ref
		c, err := kcmpFile(pid, fd, ref.pid, ref.fd)
		if errors.Is(err, unix.EBADF) || errors.Is(err, unix.ESRCH) {
			// Which of the two is closed, or gone? A reference closed
			// (or its process gone) makes every comparison with it fail.
			if c, rerr := kcmpFile(ref.pid, ref.fd, ref.pid, ref.fd); rerr != nil || c != 0 {
				return -1, errRefGone
			}
			return -1, err
		}
		if err != nil {
			return -1, err
		}
		switch c {
		case 0:
			return mid, nil
		case 1:
			hi = mid
		case 2:
			lo = mid + 1
		default:
			return -1, errCompare
		}
	}
	return -1, nil
}

// classify names the file of each of pid's descriptors, for a process
// whose descriptors were only compared with the references (scanCompare),
// adding those on the knot's files to what the reader knows: to name the
// file of a POSIX lock it owns.
func (r *reader) classify(pid int) {
	if !r.partial[pid] {
		return
	}
	delete(r.partial, pid)
	refs, _, err := r.p.fdsOn(pid, r.want, make([]byte, 32<<10))
	if err != nil {
		return
	}
	for _, ref := range refs {
		if !slices.ContainsFunc(r.fds[pid], func(o fdRef) bool { return o.fd == ref.fd }) {
			r.fds[pid] = append(r.fds[pid], ref)
			r.byIno[ref.ino] = append(r.byIno[ref.ino], ref)
		}
	}
}

// onFd reports whether pid's descriptor fd is open on inode ino, from
// what the reader knows, or else a fresh fstatat when pid's descriptors
// were only compared with the references.
func (r *reader) onFd(pid, fd int, ino uint64) bool {
	for _, ref := range r.fds[pid] {
		if ref.fd == fd && ref.ino == ino {
			return true
		}
	}
	if !r.partial[pid] {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(r.p.path(pid, "fd/"+strconv.Itoa(fd)), &st) == nil && st.Ino == ino
}
