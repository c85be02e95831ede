package lockreg

import (
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/record"
	"golang.org/x/sys/unix"
)

// nanotime is the runtime's CLOCK_MONOTONIC reading (record.Nanotime). On
// Linux that clock is system-wide, so a time recorded by one process can be
// compared with a reading of any other.
func nanotime() int64 { return record.Nanotime() }

const (
	futexWaitOp = 0 // FUTEX_WAIT, without FUTEX_PRIVATE_FLAG: the word is shared
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, at most d (d > 0). It returns early on
// a wake, a signal, or when *addr no longer holds val; the caller re-reads
// the word in every case.
func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) {
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	// Syscall, not RawSyscall: the scheduler must know this thread blocks.
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes up to n sleepers on addr, in every process.
func futexWake(addr *atomic.Uint32, n int) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
}

func unsafePointer(w *atomic.Uint32) unsafe.Pointer { return unsafe.Pointer(w) }

// procPin and procUnpin disable and re-enable preemption of the calling
// goroutine (sync.Pool's pinning; the runtime keeps both for linkname users,
// go.dev/issue/67401). No stop-the-world can begin while a goroutine is
// pinned: Registry.Close relies on it. Nothing between them may block, make
// a system call, or take long.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
