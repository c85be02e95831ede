package deadcheck

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "unsafe" // for go:linkname

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
func Take() Look {
	if iscgo {
		return Look{Why: "the program links cgo: Go's runtime never ends it for a deadlock"}
	}
	self := unix.Gettid()
	mon, err := monitor()
	if err != nil {
		return Look{Why: err.Error()}
	}
	s := make([]metrics.Sample, len(metricNames))
	var l Look
	for try := 0; try < tries; try++ {
		var transient bool
		l, transient = take(self, mon, s)
		if l.Asleep || !transient {
			break
		}
		ts := unix.NsecToTimespec(int64(settle))
		_ = unix.Nanosleep(&ts, nil)
	}
	if w := Watch.Load(); w != nil {
		(*w)(l)
	}
	return l
}

// take is one try of Take; transient says that what keeps the process
// awake may pass at once.
func take(self, mon int, s []metrics.Sample) (l Look, transient bool) {
	c1, err := readCounts(s)
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
	c2, err := readCounts(s)
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
// self and mon were scheduled (runs).
func threads(self, mon int) (n int, runs uint64, why string, transient bool) {
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return 0, 0, fmt.Sprintf("its threads cannot be read: %v", err), false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, 0, fmt.Sprintf("its threads cannot be read: %v", err), false
	}
	var buf [512]byte
	for _, name := range names {
		tid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		n++
		if tid == self {
			continue
		}
		b, err := readTask(name, "syscall", buf[:])
		if err == nil {
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
			b, err = readTask(name, "schedstat", buf[:])
		}
		if err != nil {
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

// SelfRuns returns how many times the calling thread has been scheduled
// (/proc/thread-self/schedstat); false if it cannot be read. Across a wait
// in a system call it grows by one if the thread slept once and ran on at
// once when it woke: by more if, for one, the goroutine found its
// processor taken and waited for it.
func SelfRuns() (uint64, bool) {
	var buf [128]byte
	fd, err := unix.Open("/proc/thread-self/schedstat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	return timesRun(buf[:n])
}

// timesRun reads the third field of a schedstat file ("run_time wait_time
// timeslices"): how many times the thread was scheduled.
func timesRun(b []byte) (uint64, bool) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[2], 10, 64)
	return v, err == nil
}

// readTask reads /proc/self/task/<tid>/<file> into buf.
func readTask(tid, file string, buf []byte) ([]byte, error) {
	fd, err := unix.Open("/proc/self/task/"+tid+"/"+file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// monitoring says why thread tid, taken for the runtime's monitor, whose
// /proc syscall file reads b, is not doing what the monitor does: running,
// sleeping (nanosleep, or futex), or polling the network without waiting
// (epoll_pwait with a timeout of 0).
func monitoring(tid int, b []byte) string {
	f := strings.Fields(string(b))
	if len(f) == 0 || f[0] == "running" {
		return ""
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Sprintf("thread %d: syscall file %.40q", tid, b)
	}
	switch {
	case nr == unix.SYS_NANOSLEEP || nr == unix.SYS_CLOCK_NANOSLEEP || nr == unix.SYS_FUTEX:
		return ""
	case nr == unix.SYS_EPOLL_PWAIT && len(f) > 4 && (f[4] == "0x0" || f[4] == "0"):
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
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fmt.Sprintf("thread %d: empty syscall file", tid), false
	}
	if f[0] == "running" {
		return fmt.Sprintf("thread %d is running", tid), true
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Sprintf("thread %d: syscall file %.40q", tid, b), false
	}
	switch {
	case nr < 0:
		return fmt.Sprintf("thread %d is stopped outside a system call", tid), true
	case nr == unix.SYS_NANOSLEEP || nr == unix.SYS_CLOCK_NANOSLEEP:
		return "", false
	case nr == unix.SYS_FUTEX:
		if len(f) < 3 {
			return fmt.Sprintf("thread %d: syscall file %.40q", tid, b), false
		}
		op, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
		if err != nil {
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
