package deadcheck

import (
	"bytes"
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iscgo is set by runtime/cgo when the binary links it. The runtime keeps
// this linkname working for the packages that use it (go.dev/issue/67401).
//
//go:linkname iscgo runtime.iscgo
var iscgo bool

// A Look that finds a thread running (the runtime's monitor wakes for a
// few milliseconds each time the caller leaves its system call) reads
// again after settle, tries times in all.
const (
	settle = 2 * time.Millisecond
	tries  = 3
)

// futex(2) operations: an idle thread of the runtime waits with
// FUTEX_WAIT_PRIVATE.
const (
	futexWait       = 0
	futexWaitBitset = 9
	futexPrivate    = 128
	futexRealtime   = 256
)

// Take reads the process, leaving out the thread it runs on. A caller
// that moves to another thread meanwhile (preempted) is seen running:
// awake.
//
// A Look that finds the process asleep makes no system call that Go's
// runtime sees and allocates nothing: its reads of /proc are raw system
// calls (openat, getdents64, read and close of /proc files, which never
// block for long) into buffers kept from one Look to the next. A system
// call the runtime sees would wake its monitor when it returns, which may
// hand the caller's processor to another thread meanwhile, and the
// garbage an allocating Look leaves would run collections in a program that
// otherwise runs none: both are what the caller then sees the process do
// between two Looks (Runs, Sig.GCs), and a deadlocked program would seem
// to run.
func Take() Look {
	if iscgo {
		return Look{Why: "the program links cgo: Go's runtime never ends it for a deadlock"}
	}
	mon, err := monitor()
	if err != nil {
		return Look{Why: err.Error()}
	}
	lk.mu.Lock()
	self, _, _ := unix.RawSyscall(unix.SYS_GETTID, 0, 0, 0)
	var l Look
	for try := 0; try < tries; try++ {
		var transient bool
		l, transient = take(int(self), mon)
		if l.Asleep || !transient {
			break
		}
		ts := unix.NsecToTimespec(int64(settle))
		unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	lk.mu.Unlock()
	if w := Watch.Load(); w != nil {
		(*w)(l)
	}
	return l
}

// lk is what a Look keeps from one to the next: its buffers, and the
// thread ids it read last.
var lk struct {
	mu      sync.Mutex
	samples [len(metricNames)]metrics.Sample
	path    [64]byte   // a /proc path, NUL-terminated
	file    [512]byte  // a /proc file read
	dents   [8192]byte // the entries of /proc/self/task, some at a time
	tids    []int
	self    [128]byte // SelfRuns's schedstat
}

// take is one try of Take; transient says that what keeps the process
// awake may pass at once. lk.mu is held.
func take(self, mon int) (l Look, transient bool) {
	c1, err := readCounts(lk.samples[:])
	if err != nil {
		return Look{Why: err.Error()}, false
	}
	if why := c1.awake(); why != "" {
		return Look{Why: why}, false
	}
	n1, runs1, why, transient := threads(self, mon)
	if why != "" {
		return Look{Why: why}, transient
	}
	c2, err := readCounts(lk.samples[:])
	if err != nil {
		return Look{Why: err.Error()}, false
	}
	if c2 != c1 {
		return Look{Why: "its goroutines changed while read"}, true
	}
	n2, runs, why, transient := threads(self, mon)
	if why != "" {
		return Look{Why: why}, transient
	}
	if n2 != n1 {
		return Look{Why: "its threads changed while read"}, true
	}
	if runs != runs1 {
		// A thread was scheduled while read: a timer fired, or a
		// goroutine was woken.
		return Look{Why: "its threads ran while read"}, true
	}
	return Look{Asleep: true, Sig: Sig{Goroutines: c1.total, Created: c1.created, GCs: c1.gcs, Threads: n1}, Runs: runs}, false
}

// threads reads what each thread of the process but self and mon (the
// runtime's monitor, which runs no goroutine) is doing, and says what
// keeps the process awake (why), or counts them and the times those but
// self and mon were scheduled (runs). lk.mu is held.
func threads(self, mon int) (n int, runs uint64, why string, transient bool) {
	if err := taskIDs(); err != 0 {
		return 0, 0, fmt.Sprintf("its threads cannot be read: %v", err), false
	}
	for _, tid := range lk.tids {
		n++
		if tid == self {
			continue
		}
		b, err := readTask(tid, "syscall", lk.file[:])
		if err == 0 {
			if tid == mon {
				// Its runs are not counted; but a thread taken for it
				// that waits in the network poller keeps the process
				// awake all the same.
				if why := monitoring(tid, b); why != "" {
					return 0, 0, why, false
				}
				continue
			}
			if why, transient := sleeping(tid, b); why != "" {
				return 0, 0, why, transient
			}
			b, err = readTask(tid, "schedstat", lk.file[:])
		}
		if err != 0 {
			if err == unix.ENOENT || err == unix.ESRCH {
				return 0, 0, fmt.Sprintf("thread %d ended while read", tid), true
			}
			return 0, 0, fmt.Sprintf("thread %d cannot be read: %v", tid, err), false
		}
		r, ok := timesRun(b)
		if !ok {
			return 0, 0, fmt.Sprintf("thread %d: schedstat file %.60q", tid, b), false
		}
		runs += r
	}
	return n, runs, "", false
}

// taskIDs reads the thread ids of the process (the entries of
// /proc/self/task) into lk.tids. lk.mu is held.
func taskIDs() unix.Errno {
	fd, err := rawOpen("/proc/self/task", "", "")
	if err != 0 {
		return err
	}
	defer rawClose(fd)
	lk.tids = lk.tids[:0]
	for {
		r, _, err := unix.RawSyscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&lk.dents[0])), uintptr(len(lk.dents)))
		if err != 0 {
			return err
		}
		if r == 0 {
			return 0
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type
		// (1), the name, NUL-terminated.
		b := lk.dents[:r]
		for len(b) >= 19 {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				return unix.EIO
			}
			if tid, ok := atoi(cstring(b[19:reclen])); ok {
				lk.tids = append(lk.tids, tid)
			}
			b = b[reclen:]
		}
	}
}

// SelfRuns returns how many times the calling thread has been scheduled
// (/proc/thread-self/schedstat); false if it cannot be read. Across a wait
// in a system call it grows by one if the thread slept once and ran on at
// once when it woke: by more if, for one, the goroutine found its
// processor taken and waited for it.
func SelfRuns() (uint64, bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	fd, err := rawOpen("/proc/thread-self/schedstat", "", "")
	if err != 0 {
		return 0, false
	}
	n, err := rawRead(fd, lk.self[:])
	rawClose(fd)
	if err != 0 || n <= 0 {
		return 0, false
	}
	return timesRun(lk.self[:n])
}

// timesRun reads the third field of a schedstat file ("run_time wait_time
// timeslices"): how many times the thread was scheduled.
func timesRun(b []byte) (uint64, bool) {
	var f [3][]byte
	if fields(b, f[:]) < 3 {
		return 0, false
	}
	return parseUint(f[2], 10)
}

// readTask reads /proc/self/task/<tid>/<file> into buf. lk.mu is held.
//
// The read of a "syscall" file is a system call the runtime sees: the
// kernel takes the process's exec lock for it and waits for the thread to
// be off its processor, which on a loaded machine may be a scheduler
// period or more, and a raw call would hold the loop's processor that long
// (stalling every stop-the-world, or the whole program with GOMAXPROCS=1).
// A short visible call costs nothing more: the runtime's monitor takes a
// processor from a system call only after 10 ms when others are idle.
// The other files (schedstat, the directory) are printed without waiting.
func readTask(tid int, file string, buf []byte) ([]byte, unix.Errno) {
	var num [20]byte
	fd, err := rawOpen("/proc/self/task/", string(itoa(num[:], tid)), file)
	if err != 0 {
		return nil, err
	}
	defer rawClose(fd)
	read := rawRead
	if file == "syscall" {
		read = visibleRead
	}
	n, err := read(fd, buf)
	if err != 0 {
		return nil, err
	}
	return buf[:n], 0
}

// rawOpen opens the /proc file a+b+c (b may be "/"+file) for reading, with
// a raw system call; the path is built in lk.path. lk.mu is held.
func rawOpen(a, b, c string) (int, unix.Errno) {
	p := lk.path[:0]
	p = append(p, a...)
	if b != "" {
		p = append(p, b...)
		p = append(p, '/')
	}
	p = append(p, c...)
	if len(p) >= len(lk.path) {
		return -1, unix.ENAMETOOLONG // p left lk.path's array
	}
	lk.path[len(p)] = 0 // p is lk.path's start
	dirfd := unix.AT_FDCWD
	fd, _, err := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&lk.path[0])), unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
	if err != 0 {
		return -1, err
	}
	return int(fd), 0
}

// rawRead reads fd into b with a raw system call.
func rawRead(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, err := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if err != 0 {
		return 0, err
	}
	return int(n), 0
}

// visibleRead reads fd into b with a system call the runtime sees (see
// readTask).
func visibleRead(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, err := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if err != 0 {
		return 0, err
	}
	return int(n), 0
}

// rawClose closes fd with a raw system call.
func rawClose(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

// itoa writes the decimal form of v >= 0 at the end of buf and returns it.
func itoa(buf []byte, v int) []byte {
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return buf[i:]
		}
	}
}

// atoi reads a decimal number >= 0 with no sign.
func atoi(b []byte) (int, bool) {
	v, ok := parseUint(b, 10)
	return int(v), ok && v <= 1<<31
}

// parseUint reads a number in base 10 or 16 (digits only), allocating
// nothing.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// parseInt is parseUint in base 10, with an optional minus sign.
func parseInt(b []byte) (int, bool) {
	if len(b) > 0 && b[0] == '-' {
		v, ok := parseUint(b[1:], 10)
		return -int(v), ok
	}
	v, ok := parseUint(b, 10)
	return int(v), ok
}

// cstring is b up to its first NUL.
func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// fields splits b at spaces and newlines into f, allocating nothing, and
// returns how many fields b has (more than len(f) are counted, not kept).
func fields(b []byte, f [][]byte) int {
	n := 0
	for i := 0; i < len(b); {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t') {
			i++
		}
		if i == len(b) {
			break
		}
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' {
			j++
		}
		if n < len(f) {
			f[n] = b[i:j]
		}
		n++
		i = j
	}
	return n
}

// monitoring says why thread tid, taken for the runtime's monitor, whose
// /proc syscall file reads b, is not doing what the monitor does: running,
// sleeping (nanosleep, or futex), or polling the network without waiting
// (epoll_pwait with a timeout of 0).
func monitoring(tid int, b []byte) string {
	var f [5][]byte
	nf := fields(b, f[:])
	if nf == 0 || string(f[0]) == "running" {
		return ""
	}
	nr, ok := parseInt(f[0])
	if !ok {
		return fmt.Sprintf("thread %d: syscall file %.40q", tid, b)
	}
	switch {
	case nr == unix.SYS_NANOSLEEP || nr == unix.SYS_CLOCK_NANOSLEEP || nr == unix.SYS_FUTEX:
		return ""
	case nr == unix.SYS_EPOLL_PWAIT && nf > 4 && (string(f[4]) == "0x0" || string(f[4]) == "0"):
		return ""
	}
	why, _ := sleeping(tid, b)
	if why == "" {
		why = fmt.Sprintf("thread %d is in system call %d", tid, nr)
	}
	return why
}

// sleeping says why thread tid, whose /proc syscall file reads b ("running",
// "-1 sp pc", or "nr arg1 ... arg6 sp pc"), is not an idle thread of the
// runtime, or "".
func sleeping(tid int, b []byte) (why string, transient bool) {
	var f [3][]byte
	nf := fields(b, f[:])
	if nf == 0 {
		return fmt.Sprintf("thread %d: empty syscall file", tid), false
	}
	if string(f[0]) == "running" {
		return fmt.Sprintf("thread %d is running", tid), true
	}
	nr, ok := parseInt(f[0])
	if !ok {
		return fmt.Sprintf("thread %d: syscall file %.40q", tid, b), false
	}
	switch {
	case nr < 0:
		return fmt.Sprintf("thread %d is stopped outside a system call", tid), true
	case nr == unix.SYS_NANOSLEEP || nr == unix.SYS_CLOCK_NANOSLEEP:
		return "", false
	case nr == unix.SYS_FUTEX:
		if nf < 3 {
			return fmt.Sprintf("thread %d: syscall file %.40q", tid, b), false
		}
		op, ok := parseUint(bytes.TrimPrefix(f[2], []byte("0x")), 16)
		if !ok {
			return fmt.Sprintf("thread %d: syscall file %.40q", tid, b), false
		}
		if op &^= futexPrivate | futexRealtime; op != futexWait && op != futexWaitBitset {
			return fmt.Sprintf("thread %d is in futex operation %d", tid, op), true
		}
		return "", false
	case nr == unix.SYS_EPOLL_PWAIT || nr == unix.SYS_EPOLL_PWAIT2:
		return fmt.Sprintf("thread %d waits in the network poller (a goroutine waits for I/O, or a timer is pending)", tid), false
	}
	return fmt.Sprintf("thread %d is in system call %d", tid, nr), false
}

// The runtime's monitor (sysmon) is a thread that runs no goroutine: it
// preempts long-running goroutines, takes the processors of those in
// system calls, forces a garbage collection every 2 minutes, and polls the
// network without waiting. Each time a goroutine leaves a system call, as
// the caller does, it wakes for some milliseconds, polling every 20 µs:
// caught running, it would keep every Look awake. It is the first thread
// the runtime starts after the main one (runtime.main starts it before
// anything else), and never ends: the thread with the earliest start
// time but the main one, the lowest id of those started in the same
// clock tick.
var mon struct {
	mu  sync.Mutex
	tid int
}

// monitor returns the thread id of the runtime's monitor.
func monitor() (int, error) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if mon.tid != 0 {
		return mon.tid, nil
	}
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("its threads cannot be read: %v", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("its threads cannot be read: %v", err)
	}
	main := os.Getpid()
	best, bestStart := 0, uint64(0)
	for _, name := range names {
		tid, err := strconv.Atoi(name)
		if err != nil || tid == main {
			continue
		}
		b, err := os.ReadFile("/proc/self/task/" + name + "/stat")
		if err != nil {
			continue // ended
		}
		start, ok := startTime(b)
		if !ok {
			return 0, fmt.Errorf("thread %d: stat file %.60q", tid, b)
		}
		if best == 0 || start < bestStart || start == bestStart && tid < best {
			best, bestStart = tid, start
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("no thread but the main one")
	}
	mon.tid = best
	return best, nil
}

// startTime reads field 22, the start time, of a /proc stat file; the
// second field, the command in parentheses, may hold spaces and
// parentheses of its own.
func startTime(b []byte) (uint64, bool) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // from field 3, the state
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// Readable says what of the process a Look cannot read, or nil: a process
// that is not dumpable (prctl(PR_SET_DUMPABLE, 0), a set-user-ID program)
// has its /proc files owned by root, which another user cannot open; a
// kernel built without scheduler statistics has no schedstat files. Every
// Look then fails.
func Readable() error {
	if iscgo {
		return nil // Take answers at once
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if err := taskIDs(); err != 0 {
		return fmt.Errorf("/proc/self/task cannot be read: %v", err)
	}
	self, _, _ := unix.RawSyscall(unix.SYS_GETTID, 0, 0, 0)
	for _, file := range []string{"syscall", "schedstat"} {
		if _, err := readTask(int(self), file, lk.file[:]); err != 0 {
			return fmt.Errorf("/proc/self/task/%d/%s cannot be read: %v", self, file, err)
		}
	}
	return nil
}
