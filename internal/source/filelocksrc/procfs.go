package filelocksrc

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

// procfs reads the parts of a /proc file system that file locks need.
type procfs struct{ root string }

func (p procfs) path(pid int, rest string) string {
	return p.root + "/" + strconv.Itoa(pid) + "/" + rest
}

// pids lists the processes, in the order the kernel lists them.
func (p procfs) pids() ([]int, error) {
	f, err := os.Open(p.root)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// fdRef is one open descriptor of a process on a locked file.
type fdRef struct {
	pid, fd int
	dev     uint64 // st_dev
	ino     uint64
}

// fdTable is what one read saw of a process's descriptors: their
// numbers, the references they were compared with (a table read by
// comparison, share.go), and what tells whether the table is still the
// same at the next read.
type fdTable struct {
	start uint64 // the process's start time: with the pid, its identity
	fds   []int  // its descriptors, in the kernel's order
	// stat says its descriptors were stat'ed one by one (onInodes), not
	// read by their fdinfo files or compared with references.
	stat bool
	// refs are the references a table read by comparison was compared
	// with (the next read's searchTaker tries its taker's first).
	refs []refID
}

// fdList opens pid's /proc/PID/fd directory (the caller closes it) and
// lists its descriptors with raw system calls into buf (a machine may
// have thousands of processes: this is a good part of a read's time),
// with the process's start time (0 if unreadable), its identity.
func (p procfs) fdList(pid int, buf []byte) (dir int, t *fdTable, err error) {
	dir, err = unix.Open(p.path(pid, "fd"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, &fs.PathError{Op: "open", Path: p.path(pid, "fd"), Err: err}
	}
	t = &fdTable{}
	if b, err := p.small(p.path(pid, "stat")); err == nil {
		if ps, err := parseStat(pid, b); err == nil {
			t.start = ps.Start
		}
	}
	var names []string
	for {
		n, err := unix.Getdents(dir, buf)
		if err != nil {
			unix.Close(dir)
			return -1, nil, &fs.PathError{Op: "getdents", Path: p.path(pid, "fd"), Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names[:0])
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil {
				t.fds = append(t.fds, fd)
			}
		}
	}
	return dir, t, nil
}

// same reports whether a table lists the same descriptors of the same
// process as prev.
func (t *fdTable) same(prev *fdTable) bool {
	return prev != nil && t.start != 0 && prev.start == t.start && slices.Equal(prev.fds, t.fds)
}

// statFd is a descriptor's file (st_dev, st_ino), fstatat'ed relative to
// its process's fd directory; {0, 0} if it is closed or cannot be
// stat'ed.
func statFd(dir, fd int) [2]uint64 {
	var st unix.Stat_t
	var name [20]byte
	if err := unix.Fstatat(dir, string(strconv.AppendInt(name[:0], int64(fd), 10)), &st, 0); err != nil {
		return [2]uint64{}
	}
	return [2]uint64{st.Dev, st.Ino}
}

// fdsOn lists the descriptors of pid open on one of the inodes: the
// /proc/PID/fd directory listed (fdList), and one fstatat per descriptor,
// every read (a descriptor closed and opened again at the same number is
// on another file, and nothing cheaper proves it is not). buf is the
// caller's directory buffer.
func (p procfs) fdsOn(pid int, inodes map[uint64]bool, buf []byte) ([]fdRef, *fdTable, error) {
	dir, t, err := p.fdList(pid, buf)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(dir)
	return onInodes(pid, dir, t, inodes), t, nil
}

// onInodes is fdsOn of a table listed already, its directory open in
// dir.
func onInodes(pid, dir int, t *fdTable, inodes map[uint64]bool) []fdRef {
	t.stat = true
	var out []fdRef
	for _, fd := range t.fds {
		// {0, 0}: closed meanwhile, or a file that cannot be stat'ed (it
		// holds no lock we can match).
		if f := statFd(dir, fd); f != [2]uint64{} && inodes[f[1]] {
			out = append(out, fdRef{pid: pid, fd: fd, dev: f[0], ino: f[1]})
		}
	}
	return out
}

// still reports whether a descriptor is still open on the file a table
// said (a fresh fstatat: tables may be a read old).
func (p procfs) still(ref fdRef) bool {
	var st unix.Stat_t
	return unix.Stat(p.path(ref.pid, "fd/"+strconv.Itoa(ref.fd)), &st) == nil && st.Dev == ref.dev && st.Ino == ref.ino
}

// maxFdinfo bounds one fdinfo file: a descriptor holding 100,000 POSIX
// ranges prints some 6 MB.
const maxFdinfo = 64 << 20

// fdinfoLocks reads the "lock:" lines of /proc/PID/fdinfo/FD: the locks
// held through that descriptor (a POSIX lock of its process on its file,
// a flock or OFD lock of its open file description), as a set of keys.
// Lines it cannot read are returned as errors beside the ones it could. It
// reads with raw system calls into buf (grown as needed, up to maxFdinfo),
// and allocates nothing per line: a report may read ten thousand of these,
// or one of 10,000 lines.
func (p procfs) fdinfoLocks(pid, fd int, buf *[]byte) (map[lockKey]struct{}, error) {
	return p.fdinfoLocksIn(nil, pid, fd, buf)
}

// fdinfoLocksIn is fdinfoLocks with the file opened relative to the
// process's fdinfo directory in d, when d has it open.
func (p procfs) fdinfoLocksIn(d *procDirs, pid, fd int, buf *[]byte) (map[lockKey]struct{}, error) {
	_, set, err := p.fdinfoIn(d, pid, fd, buf, nil)
	return set, err
}

// fdinfoIn is fdinfoLocksIn with the inode of the descriptor's file too,
// from the fdinfo's "ino:" line (0 if it has none): the inode its lock
// lines are on, as the lock table numbers it. With inodes not nil, a
// descriptor whose first read names another inode is read no further,
// and its set is empty (an epoll descriptor's fdinfo lists every file it
// watches).
func (p procfs) fdinfoIn(d *procDirs, pid, fd int, buf *[]byte, inodes map[uint64]bool) (ino uint64, set map[lockKey]struct{}, err error) {
	path := p.path(pid, "fdinfo/"+strconv.Itoa(fd))
	f, err := d.openat(pid, strconv.Itoa(fd), path)
	if err != nil {
		return 0, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(f)
	if len(*buf) == 0 {
		*buf = make([]byte, 4096)
	}
	n := 0
	for {
		if n == len(*buf) {
			if n >= maxFdinfo {
				break // the lines read so far; the rest is cut
			}
			*buf = append(*buf, make([]byte, len(*buf))...)
		}
		k, err := unix.Read(f, (*buf)[n:])
		if err != nil {
			return 0, nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if k == 0 {
			break
		}
		if n == 0 && inodes != nil {
			if i, ok := fdinfoIno((*buf)[:k]); ok && !inodes[i] {
				return i, map[lockKey]struct{}{}, nil
			}
		}
		n += k
	}
	data := (*buf)[:n]
	set = make(map[lockKey]struct{}, bytes.Count(data, []byte("lock:")))
	var errs []error
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("ino:")); ok {
			ino, _ = parseUint(bytes.TrimSpace(v), 10, 64)
			continue
		}
		l, ok := bytes.CutPrefix(line, []byte("lock:"))
		if !ok {
			continue
		}
		e, err := parseLine(bytes.TrimLeft(l, "\t "))
		if err != nil {
			if len(errs) < 3 {
				errs = append(errs, err)
			}
			continue
		}
		set[keyOf(&e)] = struct{}{}
	}
	return ino, set, errors.Join(errs...)
}

// fdinfoIno finds the "ino:" line in the start of an fdinfo file (its
// fourth line): the inode's number, and whether the line was there.
func fdinfoIno(b []byte) (uint64, bool) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return 0, false // cut: the caller reads on
		}
		line := b[:i]
		b = b[i+1:]
		if v, ok := bytes.CutPrefix(line, []byte("ino:")); ok {
			return parseUint(bytes.TrimSpace(v), 10, 64)
		}
	}
}

// lockKey is a lock line without what tells it apart from the same lock's
// other lines (its id and depth: an fdinfo file numbers its lines on its
// own; its mode), packed for a set.
type lockKey struct {
	class, typ   string
	noInode      bool
	pid          int32
	major, minor uint32
	ino          uint64
	start, end   int64
}

func keyOf(e *Entry) lockKey {
	return lockKey{class: e.Class, typ: e.Type, noInode: e.NoInode, pid: int32(e.PID), major: e.Major, minor: e.Minor,
		ino: e.Inode, start: e.Start, end: e.End}
}

// link is the path a descriptor names, as the kernel prints it (a deleted
// file ends in " (deleted)").
func (p procfs) link(pid, fd int) (string, error) {
	return os.Readlink(p.path(pid, "fd/"+strconv.Itoa(fd)))
}

// linkIn is link, read relative to the process's fd directory in d when
// d has it open.
func (p procfs) linkIn(d *procDirs, pid, fd int) (string, error) {
	dir, ok := d.dir(pid)
	if !ok {
		return p.link(pid, fd)
	}
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dir, strconv.Itoa(fd), buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlinkat", Path: p.path(pid, "fd/"+strconv.Itoa(fd)), Err: err}
		}
		if n < len(buf) || len(buf) >= 1<<16 {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// procDirs are one goroutine's open /proc/PID/SUB directories (fdinfo or
// fd), opened once per process and read relative to: /proc/PID is looked
// up once, not once per file (most of the cost of a small /proc file), and
// a process that exits meanwhile fails its reads rather than lending its
// pid to another. A nil *procDirs opens nothing: paths are used.
type procDirs struct {
	p    procfs
	sub  string
	open map[int]int // pid -> directory; -1: could not be opened
}

// maxProcDirs bounds the directories one procDirs keeps open.
const maxProcDirs = 64

func newProcDirs(p procfs, sub string) *procDirs {
	return &procDirs{p: p, sub: sub, open: map[int]int{}}
}

// dir returns pid's directory, opening it the first time.
func (d *procDirs) dir(pid int) (int, bool) {
	if d == nil {
		return -1, false
	}
	fd, ok := d.open[pid]
	if !ok {
		if len(d.open) >= maxProcDirs {
			d.close() // bounded: the descriptors of lockwatch's own
		}
		var err error
		fd, err = unix.Open(d.p.path(pid, d.sub), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fd = -1
		}
		d.open[pid] = fd
	}
	return fd, fd >= 0
}

// openat opens name in pid's directory, or path when it has none open.
func (d *procDirs) openat(pid int, name, path string) (int, error) {
	if dir, ok := d.dir(pid); ok {
		return unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	return unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// close closes every directory it opened.
func (d *procDirs) close() {
	if d == nil {
		return
	}
	for _, fd := range d.open {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	clear(d.open)
}

// small reads a small /proc file (stat, wchan, syscall, comm), at most
// 64 KiB.
func (p procfs) small(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// tids lists the threads of pid.
func (p procfs) tids(pid int) ([]int, error) {
	f, err := os.Open(p.path(pid, "task"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			out = append(out, tid)
		}
	}
	return out, nil
}

// thread is what /proc says a thread is doing now.
type thread struct {
	tid   int
	state string   // "S (sleeping)"
	wchan string   // the kernel function it sleeps in; "" if running or unreadable
	stack []string // its kernel stack, innermost first; nil if unreadable (it needs CAP_SYS_ADMIN)
	// sys is its system call and arguments (/proc/PID/task/TID/syscall):
	// nil when it is in none, running, or the file is unreadable.
	sys []uint64
	// ran is how much CPU time it has had (schedstat, ns) plus its
	// context switches: unchanged between two reads, it did not run in
	// between. -1 if unreadable.
	ran int64
}

// stateNames are the states of /proc/PID/stat, as the status file names them.
var stateNames = map[byte]string{'R': "running", 'S': "sleeping", 'D': "disk sleep", 'T': "stopped", 't': "tracing stop",
	'X': "dead", 'Z': "zombie", 'P': "parked", 'I': "idle"}

// thread reads what one thread of pid does now. A thread that has gone
// meanwhile is an fs.ErrNotExist error.
func (p procfs) thread(pid, tid int, withStack bool) (thread, error) {
	t := thread{tid: tid, ran: -1}
	base := p.path(pid, "task/"+strconv.Itoa(tid)+"/")
	b, err := p.small(base + "stat")
	if err != nil {
		return t, err
	}
	// The state is the field after the command's closing parenthesis.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		c := b[i+2]
		t.state = string(c)
		if n, ok := stateNames[c]; ok {
			t.state += " (" + n + ")"
		}
	}
	if b, err := p.small(base + "wchan"); err == nil && string(b) != "0" {
		t.wchan = string(bytes.TrimSpace(b))
	}
	if b, err := p.small(base + "syscall"); err == nil {
		t.sys = parseSyscall(b)
	}
	if b, err := p.small(base + "schedstat"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			run, err1 := strconv.ParseInt(f[0], 10, 64)
			slices, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 == nil && err2 == nil && (run != 0 || slices != 0) {
				t.ran = run + slices
			}
		}
	}
	if withStack {
		if b, err := p.small(base + "stack"); err == nil {
			t.stack = parseStack(b)
		}
	}
	return t, nil
}

// parseSyscall reads /proc/PID/syscall: "73 0x3 0x2 ..." is a thread in
// system call 73 with those arguments; "running" and "-1 ..." (in no
// system call) are nil.
func parseSyscall(b []byte) []uint64 {
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return nil
	}
	nr, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || nr < 0 {
		return nil
	}
	out := []uint64{uint64(nr)}
	for _, a := range f[1:7] {
		v, err := strconv.ParseUint(strings.TrimPrefix(a, "0x"), 16, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

// parseStack reads /proc/PID/stack: "[<0>] do_wait+0x5a/0x130" lines.
func parseStack(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, fn, ok := strings.Cut(l, "] "); ok {
			if i := strings.IndexByte(fn, '+'); i > 0 {
				fn = fn[:i]
			}
			out = append(out, fn)
		}
	}
	return out
}

// lockWait tells whether a thread is blocked taking a file lock: in
// flock(2), or in fcntl(2) with F_SETLKW or F_OFD_SETLKW, on descriptor
// fd (the first argument); ok is false when it is in neither.
func (t *thread) lockWait() (fd int, ofd, ok bool) {
	if len(t.sys) < 3 {
		return 0, false, false
	}
	switch t.sys[0] {
	case unix.SYS_FLOCK:
		return int(t.sys[1]), false, t.sys[2]&unix.LOCK_NB == 0
	case unix.SYS_FCNTL:
		switch t.sys[2] {
		case unix.F_SETLKW:
			return int(t.sys[1]), false, true
		case unix.F_OFD_SETLKW:
			return int(t.sys[1]), true, true
		}
	}
	return 0, false, false
}

// notExist reports whether err says the process or file is gone.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

func parseStat(pid int, b []byte) (proc.Stat, error) { return proc.ParseStat(pid, b) }
