//go:build linux && (amd64 || arm64)

package inproc

import (
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The arena is shared memory, so that lockwatch reads the records from
// outside the process, without asking it (no goroutine, no socket): under
// `lockwatch run` (LOCKWATCH_DIR set) a file of the run directory,
// ArenaFile, which outlives the process for the run's final report; else a
// memfd named MemfdName, which lockwatch finds among /proc/PID/fd. Made
// when the first record needs it (under lockwatch run, when the package
// initializes): a few system calls, no goroutine. If it cannot be made,
// the records stay in the process's memory (inGo), where only an
// in-process reader (the probe) sees them.

// MemfdName is the name of the memfd that holds a process's arena: its
// /proc/PID/fd link reads "/memfd:" + MemfdName + " (deleted)".
const MemfdName = "lockwatch-dropin"

// ArenaFile is the name of a process's arena in a run directory.
func ArenaFile(pid int) string { return "dropin-" + strconv.Itoa(pid) + ".arena" }

// sharedArena makes the arena in shared memory; nil if it cannot.
func sharedArena() *arenaT {
	f, err := arenaFile()
	if err != nil {
		return nil
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(ArenaSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return nil
	}
	if os.Getenv("LOCKWATCH_DIR") != "" {
		_ = f.Close() // the mapping stays; the file has a name
	} else {
		arenaFD = f // the memfd's only name is this descriptor
	}
	a := (*arenaT)(unsafe.Pointer(&mem[0]))
	a.init(uint64(os.Getpid()), selfStart(), nanotime(), time.Now().UnixNano())
	return a
}

// arenaFD keeps the memfd open: lockwatch opens it through /proc/PID/fd.
// Never read, but reachable: an unreachable *os.File would be closed by
// its cleanup.
//
//lint:ignore U1000 the variable is what keeps the descriptor open
var arenaFD *os.File

func arenaFile() (*os.File, error) {
	if dir := os.Getenv("LOCKWATCH_DIR"); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, ArenaFile(os.Getpid())),
			os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			if err = f.Truncate(int64(ArenaSize)); err == nil {
				return f, nil
			}
			_ = f.Close()
		}
		// Not in the run's directory: a memfd, which attach still finds.
	}
	fd, err := unix.MemfdCreate(MemfdName, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "/memfd:"+MemfdName)
	if err := f.Truncate(int64(ArenaSize)); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// selfStart is this process's start time, /proc/self/stat's field 22; 0
// if it cannot be read.
func selfStart() uint64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	return statStart(b)
}
