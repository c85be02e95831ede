package liveness

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/shirou/gopsutil/v3/process"

	"github.com/lockwatch/lockwatch/internal/proc"
)

// System answers from /proc and gopsutil. Its zero value is ready to use and
// it is safe for concurrent use.
type System struct{}

// Check proves whether id's process is alive: proc.Check reads its state
// and start time from /proc/PID/stat in one read, so a zombie (state Z or
// X) and a reused pid are told apart from a live process at once. A failed
// read is proc.Unknown, never a death.
func (System) Check(id proc.Identity) (proc.Status, error) { return proc.Check(id) }

// Command returns a short description of a process that wrote no info file:
// its command line, or its name; "" if neither can be read.
func (System) Command(pid int) string {
	p := &process.Process{Pid: int32(pid)}
	if c, err := p.CmdlineWithContext(context.Background()); err == nil && c != "" {
		return c
	}
	if n, err := p.NameWithContext(context.Background()); err == nil {
		return n
	}
	return ""
}

// Owner returns the uid that owns pid's /proc entry: the process's user.
func Owner(pid int) (uid int, err error) {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return -1, err
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid), nil
}

// Probed lists this user's processes whose environment names a run
// directory (LOCKWATCH_DIR), with that directory.
func Probed(envName string) (map[int]string, error) {
	pids, err := process.PidsWithContext(context.Background())
	if err != nil {
		return nil, err
	}
	uid := os.Getuid()
	out := make(map[int]string)
	for _, pid := range pids {
		if u, err := Owner(int(pid)); err != nil || u != uid {
			continue
		}
		if dir, ok, err := Environ(int(pid), envName); err == nil && ok {
			out[int(pid)] = dir
		}
	}
	return out, nil
}

// Environ returns the value of name in pid's initial environment
// (/proc/PID/environ), and whether it is set. The error keeps its
// *fs.PathError shape (fs.ErrNotExist: no such process; fs.ErrPermission:
// another user's).
func Environ(pid int, name string) (string, bool, error) {
	p := &process.Process{Pid: int32(pid)}
	env, err := p.EnvironWithContext(context.Background())
	if err != nil {
		return "", false, err
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true, nil
		}
	}
	return "", false, nil
}
