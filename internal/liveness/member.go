package liveness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/lockreg"
)

// ErrNotMember means a process could not be proved to be a member of the
// run: Kill leaves it alone.
var ErrNotMember = errors.New("not provably a member of the run")

// maxMapsBytes bounds the read of one /proc/PID/maps. The kernel's default
// vm.max_map_count (65,530 mappings of about 100 bytes each, more with long
// paths) stays well below it; a process with more is reported unknown rather
// than read without bound.
const maxMapsBytes = 64 << 20

// A Run is one run's arena as the kernel names it (device and inode): what
// proves that a process is a member of the run. A process is a member while
// it maps that arena shared and writable ("rw-s" in /proc/PID/maps), as
// lockreg.Open does. No process maps it so by accident: it takes opening the
// arena (mode 0600, in a 0700 directory) for writing. lockwatch itself maps
// it read-only, which never counts.
//
// A Run is a plain value, safe for concurrent use.
type Run struct {
	dir      string
	dev, ino uint64
}

// NewRun names the run in dir by its arena file.
func NewRun(dir string) (*Run, error) {
	fi, err := os.Lstat(filepath.Join(dir, lockreg.ArenaFile))
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("liveness: %s is not a regular file", filepath.Join(dir, lockreg.ArenaFile))
	}
	return &Run{dir: dir, dev: st.Dev, ino: st.Ino}, nil
}

// Dir returns the run directory.
func (r *Run) Dir() string { return r.dir }

// Maps reports whether pid maps the run's arena shared and writable now.
// The error is not nil when pid's mappings cannot be read (the process is
// gone, or belongs to another user and lockwatch is not root): nothing is
// proved then.
func (r *Run) Maps(pid int) (bool, error) {
	found, _, err := r.maps(pid)
	return found, err
}

// maps is Maps, and whether pid has any mapping at all: a process has none
// once it is exiting (the kernel releases its memory, and with it the
// robust list's locks, before it becomes a zombie).
func (r *Run) maps(pid int) (found, any bool, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	return r.scanMaps(io.LimitReader(f, maxMapsBytes+1))
}

// scanMaps reads maps lines, "start-end perms offset major:minor inode
// [path]", and looks for the arena's device and inode with perms rw-s. The
// path is not looked at: it may be gone ("(deleted)") or hold anything.
func (r *Run) scanMaps(rd io.Reader) (found, any bool, err error) {
	br := bufio.NewReaderSize(rd, 4096)
	var read int64
	for {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if read > maxMapsBytes {
			return false, true, fmt.Errorf("liveness: more than %d bytes of mappings", maxMapsBytes)
		}
		any = any || len(line) > 0
		if len(line) > 0 && r.mapsLine(line) {
			return true, true, nil
		}
		for errors.Is(err, bufio.ErrBufferFull) {
			// A long path: the fields that matter came first.
			var more []byte
			more, err = br.ReadSlice('\n')
			read += int64(len(more))
			if read > maxMapsBytes {
				return false, true, fmt.Errorf("liveness: more than %d bytes of mappings", maxMapsBytes)
			}
		}
		if err == io.EOF {
			return false, any, nil
		}
		if err != nil {
			return false, any, err
		}
	}
}

// mapsLine reports whether one maps line is a shared, writable mapping of
// the arena.
func (r *Run) mapsLine(line []byte) bool {
	f := bytes.Fields(line)
	if len(f) < 5 || len(f[1]) != 4 {
		return false
	}
	perms := f[1]
	if perms[0] != 'r' || perms[1] != 'w' || perms[3] != 's' {
		return false
	}
	major, minor, ok := bytes.Cut(f[3], []byte{':'})
	if !ok {
		return false
	}
	maj, err1 := strconv.ParseUint(string(major), 16, 32)
	mnr, err2 := strconv.ParseUint(string(minor), 16, 32)
	ino, err3 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	return ino == r.ino && unix.Mkdev(uint32(maj), uint32(mnr)) == r.dev
}

// member proves whether id's process, found alive by pid and start time, is
// a member of the run now. It reads the mappings between two checks of the
// start time, so that the mappings read are id's own: a process that died
// meanwhile is reported dead, never judged by its successor's mappings. A
// process with no mapping at all is exiting: proc.Zombie.
func (r *Run) member(id proc.Identity) (st proc.Status, maps bool, err error) {
	maps, any, err := r.maps(id.PID)
	again, err2 := proc.Check(id)
	if again != proc.Alive || err2 != nil {
		return again, false, err2
	}
	if err != nil {
		return proc.Unknown, false, fmt.Errorf("liveness: pid %d: cannot read its mappings to prove it is a member of the run: %w", id.PID, err)
	}
	if !any {
		return proc.Zombie, false, nil
	}
	return proc.Alive, maps, nil
}

// Kill sends SIGKILL to id's process only if it is a member of the run at
// the moment of the signal. It opens a pidfd first, then checks the start
// time and the mappings and the start time again, then checks that the
// pidfd's process has not exited (so the /proc reads were of that process,
// and its pid cannot have been reused in between), and signals through the
// pidfd. It returns nil if the process is already dead, and an error
// wrapping ErrNotMember if it lives but does not map the arena (it never
// joined, it closed its registry, or it exec'd another program): such a
// process is never signalled.
func (r *Run) Kill(id proc.Identity) error {
	if id.IsZero() {
		return nil
	}
	fd, err := unix.PidfdOpen(id.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("liveness: pidfd_open %d: %w", id.PID, err)
	}
	defer unix.Close(fd)
	st, err := proc.Check(id)
	if err != nil {
		return err
	}
	if st != proc.Alive {
		return nil // dead, or not id: nothing of the run to kill
	}
	st, maps, err := r.member(id)
	switch {
	case err != nil:
		return err
	case st != proc.Alive:
		return nil
	case !maps:
		return fmt.Errorf("liveness: pid %d (start %d) is alive but does not map the run's arena: %w", id.PID, id.Start, ErrNotMember)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("liveness: poll pidfd %d: %w", id.PID, err)
		}
		if n > 0 {
			return nil // exited since the pidfd was opened: dead
		}
		break
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("liveness: kill %d: %w", id.PID, err)
	}
	return nil
}
