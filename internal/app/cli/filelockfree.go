package cli

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// notInFileLock reports whether process pid provably neither holds nor
// waits for a kernel file lock, from its own /proc files: no descriptor's
// fdinfo lists a lock (the kernel lists a held flock, POSIX or OFD lock, or
// a lease, under each descriptor of the open file it was taken through),
// and none of its threads is blocked in a system call that can wait for
// one. attach then need not read the system's lock table, whose printing
// costs tens of milliseconds when other processes hold thousands of locks.
//
// Whatever it cannot tell says false, and the table is read: a thread
// blocked in any other system call than those below, a /proc file it may
// not read, a thread in the kernel outside a system call, more than
// maxLookups threads or descriptors, a process that is not 64-bit x86 (its
// system calls are numbered otherwise), lockwatch on another architecture.
func notInFileLock(pid int) bool {
	if runtime.GOARCH != "amd64" || !isX8664(pid) {
		return false
	}
	safe := func(nr int) bool { return neverLockWait[nr] }
	if !noMandatoryLocks() {
		// Before Linux 5.15, a read or write could wait for a mandatory
		// lock.
		safe = func(nr int) bool { return neverLockWait[nr] && !readWrite[nr] }
	}
	threads, err := procDir(pid, "task")
	if err != nil {
		return false
	}
	for _, tid := range threads {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, tid))
		if err != nil {
			return false // it may not be read (ptrace access), or the thread ended
		}
		nr, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if nr == "running" {
			continue
		}
		// "-1" is a thread in the kernel outside a system call: an
		// io_uring worker may be opening a file for it, which can wait to
		// break a lease.
		n, err := strconv.Atoi(nr)
		if err != nil || !safe(n) {
			return false
		}
	}
	fds, err := procDir(pid, "fdinfo")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
		if err != nil {
			if os.IsNotExist(err) {
				continue // closed meanwhile
			}
			return false
		}
		if bytes.Contains(b, []byte("\nlock:")) {
			return false
		}
	}
	return true
}

// maxLookups bounds the threads and the descriptors notInFileLock reads:
// past it, reading the lock table is the cheaper question.
const maxLookups = 1024

// procDir lists /proc/PID/NAME, at most maxLookups entries.
func procDir(pid int, name string) ([]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(maxLookups + 1)
	if err != nil {
		return nil, err
	}
	if len(names) > maxLookups {
		return nil, fmt.Errorf("more than %d entries", maxLookups)
	}
	return names, nil
}

// isX8664 reports whether pid runs a 64-bit x86 program (its system calls
// are numbered as neverLockWait's).
func isX8664(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	var h [20]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return false
	}
	return string(h[:4]) == elf.ELFMAG && elf.Class(h[elf.EI_CLASS]) == elf.ELFCLASS64 &&
		elf.Data(h[elf.EI_DATA]) == elf.ELFDATA2LSB && elf.Machine(uint16(h[18])|uint16(h[19])<<8) == elf.EM_X86_64
}

// noMandatoryLocks reports whether the kernel is 5.15 or later, which has
// no mandatory locks: a read or a write never waits for a file lock.
func noMandatoryLocks() bool {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	major, rest, _ := strings.Cut(strings.TrimSpace(string(b)), ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' }))
	return err1 == nil && err2 == nil && (ma > 5 || ma == 5 && mi >= 15)
}

// neverLockWait are the linux/amd64 system calls a thread can be blocked in
// without waiting for a file lock or a lease: what Go's idle threads, its
// network poller and its sleeps block in, socket and pipe I/O, waits for
// children and signals. flock(2), fcntl(2), open(2), the calls that break
// a lease or a delegation (truncate, unlink, rename, chmod...) and
// io_uring_enter(2) (whose requests may open files) are not in it.
var neverLockWait = map[int]bool{
	0: true, 1: true, 17: true, 18: true, 19: true, 20: true, 295: true, 296: true, 327: true, 328: true, // read, write, pread64, pwrite64, readv, writev, preadv, pwritev, preadv2, pwritev2
	7: true, 23: true, 270: true, 271: true, 232: true, 281: true, 441: true, // poll, select, pselect6, ppoll, epoll_wait, epoll_pwait, epoll_pwait2
	202: true, 24: true, 34: true, 35: true, 230: true, 219: true, // futex, sched_yield, pause, nanosleep, clock_nanosleep, restart_syscall
	61: true, 247: true, 128: true, 130: true, // wait4, waitid, rt_sigtimedwait, rt_sigsuspend
	42: true, 43: true, 288: true, 44: true, 45: true, 46: true, 47: true, 299: true, 307: true, // connect, accept, accept4, sendto, recvfrom, sendmsg, recvmsg, recvmmsg, sendmmsg
	208: true, 318: true, // io_getevents, getrandom
}

// readWrite are the calls of neverLockWait that could wait for a mandatory
// lock before Linux 5.15.
var readWrite = map[int]bool{0: true, 1: true, 17: true, 18: true, 19: true, 20: true, 295: true, 296: true, 327: true, 328: true}
