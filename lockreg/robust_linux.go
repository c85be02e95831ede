package lockreg

import (
	"os"
	"sync"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"golang.org/x/sys/unix"
)

// The kernel's robust-futex list (set_robust_list(2)) makes the kernel itself
// mark a dead holder. When a thread exits, however it exits, the kernel walks
// the list registered for it, and for each entry whose futex word's low 30
// bits equal the thread's id it sets FUTEX_OWNER_DIED (clearing the id) and
// wakes one waiter.
//
// Our lock words hold the holder's pid, which is the thread id of the main
// thread only; so the list is registered for the main thread (package init
// runs there), and the kernel processes it when the process dies.
//
// Entries are not linked and unlinked around every acquire, as glibc does for
// pthread robust mutexes. The kernel skips any entry whose word holds another
// id, so an entry may stay linked for as long as its lock slot is mapped: a
// process links the entry of each lock it opens, once, and the acquire path
// does no list work at all (no list_op_pending either: the CAS that takes
// the lock is the one store that makes the kernel's check succeed).
//
// A list has one futex_offset for all entries, while entries must live in
// this process's private memory (each process links its own). So every
// writable arena mapping is placed arena.RobustOffset bytes above a private,
// anonymous mapping of the same size: the entry of the word at address w is
// the pointer-sized cell at w - arena.RobustOffset.

// robustListLimit is the kernel's ROBUST_LIST_LIMIT: it stops walking a list
// after this many entries. Locks beyond it fall back to liveness polling.
const robustListLimit = 2048

// robustHead is struct robust_list_head.
type robustHead struct {
	next        unsafe.Pointer // struct robust_list *next: first entry, or &head when empty
	futexOffset int64
	pending     uintptr // list_op_pending: unused, see above
}

// The list is per process, as the kernel's registration is per thread and
// only the main thread's matters: one package-level head is the honest model
// of that state. It must never move, so it lives in the data segment.
var robust struct {
	head robustHead

	mu     sync.Mutex
	ok     bool   // the head is registered for the main thread
	why    string // why not, when !ok
	linked int    // entries on the list
}

func init() {
	registerRobustList()
}

// registerRobustList runs in package init, which Go runs on the main thread.
func registerRobustList() {
	robust.head.next = unsafe.Pointer(&robust.head)
	robust.head.futexOffset = arena.RobustOffset
	if os.Getenv("LOCKREG_ROBUST") == "0" {
		robust.why = "disabled by LOCKREG_ROBUST=0"
		return
	}
	if unix.Gettid() != os.Getpid() {
		robust.why = "package init did not run on the main thread"
		return
	}
	var cur, size uintptr
	if _, _, e := unix.RawSyscall(unix.SYS_GET_ROBUST_LIST, 0, uintptr(unsafe.Pointer(&cur)), uintptr(unsafe.Pointer(&size))); e != 0 {
		robust.why = "get_robust_list: " + e.Error()
		return
	}
	if cur != 0 {
		// glibc (a cgo binary) registered its own list on this thread;
		// replacing it would break glibc's robust mutexes.
		robust.why = "the main thread already has a robust list (glibc: a cgo or race-enabled binary)"
		return
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SET_ROBUST_LIST, uintptr(unsafe.Pointer(&robust.head)), unsafe.Sizeof(robust.head), 0); e != 0 {
		robust.why = "set_robust_list: " + e.Error()
		return
	}
	robust.ok = true
}

// RobustList reports whether the kernel marks this process's locks when it
// dies, and if not, why not. Without it, waiters in other processes find out
// by checking the holder's liveness while they wait.
func RobustList() (ok bool, why string) { return robust.ok, robust.why }

// robustLink puts the entry of the lock word w on the list. It reports false
// when the list is unavailable or full.
func robustLink(w unsafe.Pointer) bool {
	if !robust.ok {
		return false
	}
	robust.mu.Lock()
	defer robust.mu.Unlock()
	if robust.linked >= robustListLimit {
		return false
	}
	// The entry is a cell in the private mapping; Go's collector ignores
	// pointers outside its heap, so storing them here is sound.
	e := unsafe.Add(w, -arena.RobustOffset)
	*(*unsafe.Pointer)(e) = robust.head.next
	robust.head.next = e
	robust.linked++
	return true
}

// robustUnlinkRange removes every entry in [lo, hi) from the list, before that
// memory is unmapped.
func robustUnlinkRange(lo, hi uintptr) {
	if !robust.ok {
		return
	}
	robust.mu.Lock()
	defer robust.mu.Unlock()
	headAddr := unsafe.Pointer(&robust.head)
	prev := &robust.head.next
	for e := *prev; e != headAddr; {
		next := *(*unsafe.Pointer)(e)
		if a := uintptr(e); a >= lo && a < hi {
			*prev = next
			robust.linked--
		} else {
			prev = (*unsafe.Pointer)(e)
		}
		e = next
	}
}
