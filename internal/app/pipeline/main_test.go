package pipeline

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// demoBin is the demo binary the end-to-end tests run, built once by
// TestMain.
var demoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "demo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoBin = filepath.Join(dir, "demo")
	// Static, without -race: the kernel's robust-futex list then works
	// (a cgo binary's main thread carries glibc's own).
	args := []string{"build", "-o", demoBin}
	if os.Getenv("GOCOVERDIR") != "" {
		// make cover: the demo's processes count too.
		args = append(args, "-cover", "-coverpkg=github.com/lockwatch/lockwatch/...")
	}
	build := exec.Command("go", append(args, "github.com/lockwatch/lockwatch/cmd/demo")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build demo: %v\n%s", err, out)
		return 1
	}
	if code := m.Run(); code != 0 {
		return code
	}
	// The drop-in's coarse clock (internal/rt/record) is the process's own,
	// not a test's: it parks itself when the locks are idle.
	if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/lockwatch/lockwatch/internal/rt/record.tickCoarse")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// ExitCode: nil exits 0, an *ExitError (also wrapped) its code in silence
// (Main has said why), any other error 1, said on stderr.
func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
		says string
	}{
		{nil, 0, ""},
		{&ExitError{Code: exitUsage}, exitUsage, ""},
		{fmt.Errorf("run: %w", &ExitError{Code: exitInterrupted}), exitInterrupted, ""},
		{errors.New("broken contract"), exitLost, "demo: broken contract\n"},
	} {
		var stderr strings.Builder
		if got := ExitCode(c.err, &stderr); got != c.code || stderr.String() != c.says {
			t.Errorf("ExitCode(%v) = %d, stderr %q; want %d, %q", c.err, got, stderr.String(), c.code, c.says)
		}
	}
	cause := errors.New("lost 3 messages")
	if e := (&ExitError{Code: exitLost, Err: cause}); e.Error() != "exit status 1: lost 3 messages" || !errors.Is(e, cause) {
		t.Errorf("ExitError with a cause: %q, Is(cause) %v; want the status and the cause, and true", e.Error(), errors.Is(e, cause))
	}
	if e := (&ExitError{Code: exitUsage}); e.Error() != "exit status 2" {
		t.Errorf("ExitError without a cause: %q; want %q", e.Error(), "exit status 2")
	}
}
