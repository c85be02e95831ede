package liveness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
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

// NewRun names the run in dir by its arena file, found as every file of a
// run is (arena.OpenRunDir): through the run directory's handle, after
// the directory is checked (this user's, mode 0700, not a symbolic link),
// never following a symbolic link.
func NewRun(dir string) (*Run, error) {
	rd, err := arena.OpenRunDir(dir)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	f, err := rd.OpenFile(arena.ArenaFile, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("liveness: %s is not a regular file", filepath.Join(dir, arena.ArenaFile))
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
//
// A process that joined the run by importing the drop-in sync alone (no
// probe, no lockreg) maps no lockreg arena: its own drop-in arena file of
// the run (inproc.ArenaFile, which it made, mode 0600, in the run's 0700
// directory, and maps shared and writable) proves it a member the same way.
func (r *Run) maps(pid int) (found, any bool, err error) {
	found, any, err = r.mapsOf(pid)
	if found || !any || err != nil {
		return found, any, err
	}
	if d, ok := r.dropinArena(pid); ok {
		return d.mapsOf(pid)
	}
	return found, any, err
}

func (r *Run) mapsOf(pid int) (found, any bool, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	return r.scanMaps(io.LimitReader(f, maxMapsBytes+1))
}

// dropinArena names process pid's drop-in arena file of the run, if there
// is one (a regular file, not followed if a symbolic link).
func (r *Run) dropinArena(pid int) (*Run, bool) {
	fi, err := os.Lstat(filepath.Join(r.dir, inproc.ArenaFile(pid)))
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, false
	}
	return &Run{dir: r.dir, dev: st.Dev, ino: st.Ino}, true
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

// ErrTraced means a member of the run is traced (a debugger, strace): its
// tracer can resume it at any moment, so no stop holds the proof of its
// membership, and Kill leaves it alone.
var ErrTraced = errors.New("traced by another process")

// stopWait bounds how long Kill waits for a member to stop: a thread in an
// uninterruptible sleep stops only when it leaves it.
const stopWait = 2 * time.Second

// stopRetries bounds how often Kill stops a member again that something
// else continued (SIGCONT) while its membership was being proved.
const stopRetries = 3

// testHookProved, when set by a test, runs between Kill's first proof of
// membership and the stop: where the process could leave the run (exec)
// before the stop existed.
var testHookProved func(pid int)

// Kill sends SIGKILL to id's process only if it is a member of the run at
// the moment of the signal, and it proves that while the process cannot
// change: it opens a pidfd; proves the membership once (the start time, the
// mappings, the start time again; a process that is not a member is never
// signalled at all); stops the process through the pidfd (SIGSTOP) and
// waits until every thread of it is stopped; proves the membership again,
// and checks that every thread is still stopped (so no thread ran between
// the proof and the signal: none can exec or unmap the arena); then sends
// SIGKILL through the pidfd, which the kernel delivers to a stopped process
// at once. A process that no longer qualifies once stopped (it exec'd
// another program in between) is continued (SIGCONT), unless it was stopped
// before Kill stopped it, which Kill leaves as it found it.
//
// It returns nil if the process is already dead; an error wrapping
// ErrNotMember if it lives but does not map the arena (it never joined, it
// closed its registry, or it exec'd another program); an error wrapping
// ErrTraced if a tracer holds it. In those cases it is not killed.
//
// What is left: a third party's SIGCONT in the microseconds between the last
// check that every thread is stopped and the SIGKILL, followed at once by an
// exec, is not seen (docs/reliability.md).
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
	if dead, err := r.prove(fd, id); dead || err != nil {
		return err
	}
	if testHookProved != nil {
		testHookProved(id.PID)
	}
	// Before the stop: a tracer, and whether something else stopped it.
	if tracer, err := tracerOf(id.PID); err != nil || tracer != 0 {
		return traced(id, tracer, err)
	}
	before, err := threads(id.PID)
	if err != nil {
		return goneOr(fd, id, err)
	}
	stoppedBefore := before.stopped()
	cont := func() {
		if !stoppedBefore {
			_ = unix.PidfdSendSignal(fd, unix.SIGCONT, nil, 0) // an error means it is gone
		}
	}
	for try := 0; ; try++ {
		if err := unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return fmt.Errorf("liveness: stop %d: %w", id.PID, err)
		}
		ts, err := waitStopped(fd, id.PID)
		switch {
		case errors.Is(err, errExited):
			return nil
		case err != nil:
			cont()
			return err
		case ts.traced():
			cont()
			tracer, err := tracerOf(id.PID)
			return traced(id, tracer, err)
		}
		// Stopped: nothing of it runs. Prove again, then check that it
		// stayed stopped throughout.
		dead, err := r.prove(fd, id)
		if dead {
			return nil
		}
		if err != nil {
			cont()
			return err
		}
		after, err := threads(id.PID)
		if err != nil {
			return goneOr(fd, id, err)
		}
		if !after.stopped() || !after.same(ts) {
			if try+1 < stopRetries {
				continue // continued by something else meanwhile: stop it again
			}
			cont()
			return fmt.Errorf("liveness: pid %d: continued by another process each time it was stopped to prove it is a member of the run: not killed", id.PID)
		}
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("liveness: kill %d: %w", id.PID, err)
		}
		return nil
	}
}

// prove proves that id's process, whose pidfd is fd, is a member of the
// run now: dead is true if it has died (nothing to do), and err wraps
// ErrNotMember if it lives but does not map the arena.
func (r *Run) prove(fd int, id proc.Identity) (dead bool, err error) {
	st, maps, err := r.member(id)
	switch {
	case err != nil:
		return false, err
	case st != proc.Alive:
		return true, nil
	case !maps:
		return false, fmt.Errorf("liveness: pid %d (start %d) is alive but does not map the run's arena: %w", id.PID, id.Start, ErrNotMember)
	}
	// The pidfd's process has not exited since it was opened: the /proc
	// reads were of that process, and its pid cannot have been reused.
	exited, err := pidfdExited(fd)
	if err != nil {
		return false, fmt.Errorf("liveness: poll pidfd %d: %w", id.PID, err)
	}
	return exited, nil
}

// pidfdExited reports whether the pidfd's process has exited.
func pidfdExited(fd int) (bool, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n > 0, err
	}
}

// goneOr is the error of a failed read of id's threads: nil if the process
// has exited meanwhile.
func goneOr(fd int, id proc.Identity, err error) error {
	if exited, _ := pidfdExited(fd); exited {
		return nil
	}
	return fmt.Errorf("liveness: pid %d: cannot read its threads: %w", id.PID, err)
}

func traced(id proc.Identity, tracer int, err error) error {
	if err != nil {
		return fmt.Errorf("liveness: pid %d: cannot read whether it is traced: %w", id.PID, err)
	}
	if tracer == 0 {
		return fmt.Errorf("liveness: pid %d is in a tracing stop: %w", id.PID, ErrTraced)
	}
	return fmt.Errorf("liveness: pid %d is traced by pid %d (a debugger or strace), which can resume it at any moment: %w", id.PID, tracer, ErrTraced)
}

// errExited is waitStopped's answer for a process that exited.
var errExited = errors.New("exited")

// waitStopped waits until every thread of pid is stopped (or traced), for
// at most stopWait. Nothing tells a process other than a parent or a tracer
// of a stop, so it reads the threads' states, at growing intervals.
func waitStopped(fd, pid int) (threadStates, error) {
	deadline := time.Now().Add(stopWait)
	pause := 50 * time.Microsecond
	for {
		if exited, err := pidfdExited(fd); err != nil || exited {
			return nil, errExited
		}
		ts, err := threads(pid)
		if err == nil && (ts.stopped() || ts.traced()) {
			return ts, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("liveness: pid %d: cannot read its threads: %w", pid, err)
			}
			return nil, fmt.Errorf("liveness: pid %d did not stop within %v (a thread in an uninterruptible sleep?): not killed", pid, stopWait)
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// threadStates maps each thread of a process to its state (the third field
// of /proc/PID/task/TID/stat).
type threadStates map[int]byte

// maxThreads bounds the threads read of one process.
const maxThreads = 1 << 16

// threads reads the state of every thread of pid.
func threads(pid int) (threadStates, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(maxThreads + 1)
	f.Close()
	if err != nil {
		return nil, err
	}
	if len(names) > maxThreads {
		return nil, fmt.Errorf("more than %d threads", maxThreads)
	}
	ts := make(threadStates, len(names))
	for _, name := range names {
		tid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + name + "/stat")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				ts[tid] = 'X' // exited meanwhile
				continue
			}
			return nil, err
		}
		s, err := proc.ParseStat(tid, b)
		if err != nil {
			return nil, err
		}
		ts[tid] = s.State
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("no threads")
	}
	return ts, nil
}

// stopped reports whether no thread can run: each is stopped, or has
// exited.
func (ts threadStates) stopped() bool {
	for _, s := range ts {
		if s != 'T' && s != 'Z' && s != 'X' && s != 'x' {
			return false
		}
	}
	return true
}

// traced reports whether a thread is in a tracing stop.
func (ts threadStates) traced() bool {
	for _, s := range ts {
		if s == 't' {
			return true
		}
	}
	return false
}

// same reports whether ts and o name the same threads.
func (ts threadStates) same(o threadStates) bool {
	if len(ts) != len(o) {
		return false
	}
	for tid := range ts {
		if _, ok := o[tid]; !ok {
			return false
		}
	}
	return true
}

// tracerOf returns the pid of pid's tracer (TracerPid in
// /proc/PID/status), 0 if none.
func tracerOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("TracerPid:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, fmt.Errorf("no TracerPid in /proc/%d/status", pid)
}
