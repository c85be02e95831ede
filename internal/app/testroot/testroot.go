// Package testroot is the test main of the suites that start lockwatch,
// probes and programs that make runs of their own: it runs the tests under
// a temporary $LOCKWATCH_ROOT, so that every run they make, directly or
// through another program ('lockwatch run', the demo), goes there and
// nothing is left in /dev/shm, and it removes what the suite made once for
// all its tests (TempDir).
package testroot

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// made are the directories to remove after the tests (TempDir).
var made struct {
	sync.Mutex
	dirs []string
}

// Run runs m's tests with $LOCKWATCH_ROOT (arena.EnvRoot) set to a new
// temporary directory named after pattern (as os.MkdirTemp names it), then
// removes it and every directory TempDir made, and returns m.Run's code: a
// test binary's TestMain calls it once, after its child roles, as
// os.Exit(testroot.Run(m, "lockwatch-cli-root-")). If the root cannot be
// made it says why on stderr and returns 1 without running the tests.
func Run(m *testing.M, pattern string) int {
	root, err := os.MkdirTemp("", pattern)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testroot:", err)
		return 1
	}
	os.Setenv(arena.EnvRoot, root)
	code := m.Run()
	made.Lock()
	dirs := append([]string{root}, made.dirs...)
	made.dirs = nil
	made.Unlock()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
	return code
}

// TempDir makes a temporary directory (os.MkdirTemp("", pattern)) that Run
// removes after the tests: for what a suite makes once and shares between
// its tests, such as the binaries it builds, which outlive any one test's
// t.TempDir.
func TempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	made.Lock()
	made.dirs = append(made.dirs, dir)
	made.Unlock()
	return dir, nil
}
