//go:build linux

package deadcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSleeping: each thread's system call, as /proc/self/task/*/syscall
// shows it, is an idle thread of the runtime (futex wait, nanosleep), or
// keeps the process awake, for a while (running) or until something
// outside wakes it.
func TestSleeping(t *testing.T) {
	futex, nanosleep, epoll := unix.SYS_FUTEX, unix.SYS_NANOSLEEP, unix.SYS_EPOLL_PWAIT
	for _, tc := range []struct {
		name, file string
		why        string // "" for idle
		transient  bool
	}{
		{"futex wait private", fmt.Sprintf("%d 0x7331c0 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x48f083\n", futex), "", false},
		{"futex wait", fmt.Sprintf("%d 0x7331c0 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x48f083\n", futex), "", false},
		{"futex wait bitset realtime", fmt.Sprintf("%d 0x7331c0 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd 0x48f083\n", futex), "", false},
		{"futex wake", fmt.Sprintf("%d 0x7331c0 0x81 0x1 0x0 0x0 0x0 0x7ffd 0x48f083\n", futex), "futex operation 1", true},
		{"nanosleep", fmt.Sprintf("%d 0xc000 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x48f083\n", nanosleep), "", false},
		{"network poller", fmt.Sprintf("%d 0x6 0xc000 0x80 0xea5f 0x0 0x0 0x7ffd 0x40a78e\n", epoll), "network poller", false},
		{"read", "0 0x3 0xc000 0x1 0x0 0x0 0x0 0x7ffd 0x40a78e\n", "system call 0", false},
		{"running", "running\n", "is running", true},
		{"stopped", "-1 0x7ffd 0x40a78e\n", "stopped outside", true},
		{"short futex", fmt.Sprintf("%d\n", futex), "syscall file", false},
		{"garbage", "x y z\n", "syscall file", false},
		{"empty", "", "empty", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, transient := sleeping(7, []byte(tc.file))
			if (why == "") != (tc.why == "") || !strings.Contains(why, tc.why) || transient != tc.transient {
				t.Errorf("sleeping(%q) = %q, %v; want %q, %v", tc.file, why, transient, tc.why, tc.transient)
			}
		})
	}
}

// TestMonitoring: the thread taken for the runtime's monitor may run,
// sleep or poll the network without waiting; waiting in the poller, it is
// not the monitor, and keeps the process awake.
func TestMonitoring(t *testing.T) {
	futex, nanosleep, epoll := unix.SYS_FUTEX, unix.SYS_NANOSLEEP, unix.SYS_EPOLL_PWAIT
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{"running\n", true},
		{fmt.Sprintf("%d 0xc000 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x48f083\n", nanosleep), true},
		{fmt.Sprintf("%d 0x586820 0x80 0x0 0xc000ea0 0x0 0x0 0x7ffd 0x48f083\n", futex), true},
		{fmt.Sprintf("%d 0x6 0xc000 0x80 0x0 0x0 0x0 0x7ffd 0x40a78e\n", epoll), true},
		{fmt.Sprintf("%d 0x6 0xc000 0x80 0xea5f 0x0 0x0 0x7ffd 0x40a78e\n", epoll), false},
		{fmt.Sprintf("%d 0x6 0xc000 0x80 0xffffffff 0x0 0x0 0x7ffd 0x40a78e\n", epoll), false},
		{"0 0x3 0xc000 0x1 0x0 0x0 0x0 0x7ffd 0x40a78e\n", false},
	} {
		if why := monitoring(7, []byte(tc.file)); (why == "") != tc.ok {
			t.Errorf("monitoring(%q) = %q; want ok %v", tc.file, why, tc.ok)
		}
	}
}

// TestStartTime reads field 22 of a stat file whose command has spaces and
// parentheses.
func TestStartTime(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want uint64
		ok   bool
	}{
		{"5831 (blocked) S 1 5831 0 0 -1 4194304 354 0 0 0 0 0 0 0 20 0 5 0 3254067 1293242368 856", 3254067, true},
		{"5831 (a b) c)) S 1 5831 0 0 -1 4194304 354 0 0 0 0 0 0 0 20 0 5 0 42 1 2", 42, true},
		{"5831 (x) S 1 2", 0, false},
		{"5831 x S", 0, false},
	} {
		got, ok := startTime([]byte(tc.stat))
		if got != tc.want || ok != tc.ok {
			t.Errorf("startTime(%q) = %d, %v; want %d, %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
}

// TestTimesRun reads the third field of a schedstat file.
func TestTimesRun(t *testing.T) {
	for _, tc := range []struct {
		file string
		want uint64
		ok   bool
	}{{"20594929 123 1571\n", 1571, true}, {"1 2\n", 0, false}, {"1 2 x\n", 0, false}} {
		if got, ok := timesRun([]byte(tc.file)); got != tc.want || ok != tc.ok {
			t.Errorf("timesRun(%q) = %d, %v; want %d, %v", tc.file, got, ok, tc.want, tc.ok)
		}
	}
}

// TestTakeAwake: this test binary is awake (the testing package's alarm is
// a pending timer, and a cgo build, as -race makes it, is never asleep),
// and says why.
func TestTakeAwake(t *testing.T) {
	l := Take()
	if l.Asleep || l.Why == "" {
		t.Fatalf("Take() = %+v; want awake, with why", l)
	}
	if iscgo && !strings.Contains(l.Why, "cgo") {
		t.Errorf("a cgo binary: Take() = %+v; want cgo named", l)
	}
}

// TestMonitor: the runtime's monitor is a thread of this process, not the
// main one nor the caller's.
func TestMonitor(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := monitor()
	if err != nil {
		t.Fatal(err)
	}
	if m == unix.Getpid() || m == unix.Gettid() {
		t.Errorf("monitor() = %d: the main thread or the caller's", m)
	}
	lk.mu.Lock()
	_, errno := readTask(m, "syscall", lk.file[:])
	lk.mu.Unlock()
	if errno != 0 {
		t.Errorf("monitor() = %d, not a thread of this process: %v", m, errno)
	}
}

// TestLookAllocatesNothing: what a Look that finds a process asleep does
// (its threads listed, each one's syscall and schedstat files read and
// parsed, the metrics read, the caller's own runs) allocates nothing: the
// garbage would run collections in a deadlocked program, which its Looks
// would then see as a program that runs (Sig.GCs).
func TestLookAllocatesNothing(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	idle := []byte(fmt.Sprintf("%d 0x7331c0 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x48f083\n", unix.SYS_FUTEX))
	var threads int
	allocs := testing.AllocsPerRun(20, func() {
		lk.mu.Lock()
		defer lk.mu.Unlock()
		if err := taskIDs(); err != 0 {
			t.Fatal(err)
		}
		threads = len(lk.tids)
		for _, tid := range lk.tids {
			if _, err := readTask(tid, "syscall", lk.file[:]); err != 0 {
				continue // ended
			}
			if why, _ := sleeping(tid, idle); why != "" {
				t.Fatal(why)
			}
			if why := monitoring(tid, idle); why != "" {
				t.Fatal(why)
			}
			if b, err := readTask(tid, "schedstat", lk.file[:]); err == 0 {
				if _, ok := timesRun(b); !ok {
					t.Fatalf("schedstat %q", b)
				}
			}
		}
		if _, err := readCounts(lk.samples[:]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Look's reads of %d threads allocate %v times; want none", threads, allocs)
	}
	if allocs := testing.AllocsPerRun(20, func() { SelfRuns() }); allocs != 0 {
		t.Errorf("SelfRuns allocates %v times; want none", allocs)
	}
}

// BenchmarkTake is one Look at a process kept awake by a goroutine in a
// system call or one running (a busy program; both found by the metrics:
// the cheap case) or by one waiting in the network poller (every thread
// read: the dear case, an idle server's):
// what the probe pays per look, at most once in 250 ms. Built without cgo
// (a cgo build is answered at once).
func BenchmarkTake(b *testing.B) {
	if iscgo {
		b.Skip("a cgo build is never read; run with CGO_ENABLED=0")
	}
	for _, tc := range []struct {
		name string
		want string
		wait func(r *os.File)
	}{
		{"awake=syscall", "system call", func(r *os.File) {
			var c [1]byte
			_, _ = syscall.Read(int(r.Fd()), c[:]) // Fd makes it blocking
		}},
		{"awake=poller", "network poller", func(r *os.File) {
			var c [1]byte
			_, _ = r.Read(c[:])
		}},
		{"awake=running", "running besides", func(r *os.File) {
			// A busy program: a goroutine runs until the pipe has
			// something (never) or is closed.
			raw, _ := r.SyscallConn()
			for closed := false; !closed; {
				_ = raw.Read(func(fd uintptr) bool {
					var c [1]byte
					n, err := syscall.Read(int(fd), c[:])
					closed = n > 0 || err == nil || err != syscall.EAGAIN
					return true // never wait
				})
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			if tc.name == "awake=syscall" {
				r.Fd()
			}
			done := make(chan struct{})
			go func() { tc.wait(r); close(done) }()
			defer func() { w.Close(); <-done; r.Close() }()
			for {
				l := Take()
				if strings.Contains(l.Why, tc.want) {
					break
				}
				runtime.Gosched() // the reader has yet to wait
			}
			for b.Loop() {
				if l := Take(); l.Asleep {
					b.Fatal("asleep")
				}
			}
		})
	}
}
