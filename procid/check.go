package procid

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// Check says whether the process id names, on this machine, is alive, from
// one read of /proc/PID/stat. Each answer but Unknown is a proof: Gone, no
// process has the pid; Reused, the pid's start time differs; Zombie, the
// kernel says it exited. An id without a start time (0) is checked by pid
// only and is never Reused. A failed read (permissions, no file descriptor
// left) is Unknown with its error: it proves nothing. id.Host is not
// looked at: the caller asks only about processes of this machine.
func Check(id ID) (Status, error) {
	state, start, err := stat(id.PID)
	switch {
	case errors.Is(err, errNoProcess):
		return Gone, nil
	case err != nil:
		return Unknown, err
	case id.Start != 0 && start != id.Start:
		return Reused, nil
	case state == 'Z' || state == 'X':
		return Zombie, nil
	}
	return Alive, nil
}

// Self returns the calling process's ID (Host "").
func Self() ID { return self }

var self = func() ID {
	_, start, err := stat(os.Getpid())
	if err != nil {
		return ID{PID: os.Getpid()}
	}
	return ID{PID: os.Getpid(), Start: start}
}()

var errNoProcess = errors.New("no such process")

// stat reads the state (field 3) and the start time (field 22) of
// /proc/PID/stat. The command name before them may hold spaces and
// parentheses, so the fields are counted from the last ')'.
func stat(pid int) (state byte, start uint64, err error) {
	if pid <= 0 {
		return 0, 0, errNoProcess
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, 0, errNoProcess
	}
	if err != nil {
		return 0, 0, err
	}
	if end := bytes.LastIndexByte(b, ')'); end >= 0 {
		if f := bytes.Fields(b[end+1:]); len(f) >= 20 && len(f[0]) == 1 {
			if start, err = strconv.ParseUint(string(f[19]), 10, 64); err == nil {
				return f[0][0], start, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("procid: pid %d: unreadable /proc/%d/stat %.80q", pid, pid, b)
}
