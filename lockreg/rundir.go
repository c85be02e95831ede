package lockreg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/procid"
)

// EnvRoot names the environment variable that, when set, replaces the
// default root: tests and scripts that want their runs elsewhere than in the
// user's shared-memory directory set it.
const EnvRoot = "LOCKWATCH_ROOT"

// DefaultRoot returns the directory under which run directories are made
// when none is named: $LOCKWATCH_ROOT if set, else /dev/shm/lockwatch-UID
// where /dev/shm exists (memory, like a POSIX semaphore), otherwise
// $TMPDIR/lockwatch-UID. It is created with mode 0700 if missing, and
// refused if it is a symbolic link, another user's, or open to other users.
func DefaultRoot() (string, error) {
	if root := os.Getenv(EnvRoot); root != "" {
		root, err := filepath.Abs(root)
		if err != nil {
			return "", err
		}
		if err := checkRunDir(root, true); err != nil {
			return "", err
		}
		return root, nil
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	root := filepath.Join(base, fmt.Sprintf("lockwatch-%d", os.Getuid()))
	if err := checkRunDir(root, true); err != nil {
		return "", err
	}
	return root, nil
}

// NewRunDir makes a fresh run directory under root, named
// run-YYYYMMDD-HHMMSS-PID-N after the calling process, mode 0700. It does
// not create the arena: the first process to Open the directory does.
func NewRunDir(root string) (string, error) {
	if err := checkRunDir(root, true); err != nil {
		return "", err
	}
	stamp := time.Now().Format("20060102-150405")
	for n := 0; ; n++ {
		dir := filepath.Join(root, fmt.Sprintf("run-%s-%d-%d", stamp, os.Getpid(), n))
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, nil
		}
		if !os.IsExist(err) || n > 1000 {
			return "", err
		}
	}
}

// RunDirs lists the run directories under root, newest first.
func RunDirs(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := len(ents) - 1; i >= 0; i-- {
		e := ents[i]
		if e.IsDir() && strings.HasPrefix(e.Name(), "run-") {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out, nil
}

// ProcessFiles returns the paths of a process's files in a run directory:
// its info file (JSON), its stack dictionary, and the base name (without
// extension) that other per-process files, like the probe's socket, share.
func ProcessFiles(dir string, id procid.ID) (info, stacks, base string) {
	base = filepath.Join(dir, strings.TrimSuffix(processFile(id, "x"), ".x"))
	return base + ".json", base + ".stacks", base
}

// RemoveIfClean removes the run directory dir if its run ended cleanly:
// every process in its table closed its registry (a clean exit) and no lock
// is held. A run with anything to diagnose (a process that died, a lock held)
// is kept. It reports whether it removed the directory.
func RemoveIfClean(dir string) (bool, error) {
	s, err := ReadSnapshot(dir)
	if err != nil {
		return false, err
	}
	for _, p := range s.Processes {
		if p.State != ProcExited {
			return false, nil
		}
	}
	for _, l := range s.Locks {
		if l.Held() {
			return false, nil
		}
	}
	return true, os.RemoveAll(dir)
}
