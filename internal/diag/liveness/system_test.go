package liveness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// report prints a child's line for its test to read.
func report(args ...any) { fmt.Println(args...) }

// exitedUnreaped starts a program that exits at once, and returns its pid
// once it has exited but before it is reaped: a zombie. The cleanup reaps it.
func exitedUnreaped(t *testing.T, name string, args ...string) (*exec.Cmd, proc.Identity) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Wait() })
	st, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	return cmd, st.Identity()
}

// Command describes a process that wrote no info file: its command line
// with its arguments, or, when it has none (a zombie's is gone), its name;
// nothing for a pid that does not exist.
func TestCommand(t *testing.T) {
	_, sleeping := sleeper(t)
	_, zombie := exitedUnreaped(t, "true")
	if st, _ := proc.Check(zombie); st != proc.Zombie {
		t.Fatalf("the exited child is %v; want a zombie", st)
	}
	tests := []struct {
		name string
		pid  int
		want string
	}{
		{"command line", sleeping.PID, "sleep 60"},
		{"zombie: its name", zombie.PID, "true"},
		{"no such pid", 1 << 22, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (System{}).Command(tt.pid); got != tt.want {
				t.Errorf("Command(%d): got %q; want %q", tt.pid, got, tt.want)
			}
		})
	}
}

// Probed finds this user's processes whose environment names a run
// directory, wherever that directory is (ps lists runs outside the default
// root this way), and no process without the variable.
func TestProbed(t *testing.T) {
	const env = "LOCKWATCH_LIVENESS_TEST_PROBED"
	dir := filepath.Join(t.TempDir(), "elsewhere", "run")
	start := func(extra ...string) int {
		cmd := exec.Command("sleep", "60")
		cmd.Env = append(os.Environ(), extra...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	with := start(env + "=" + dir)
	empty := start(env + "=")
	without := start()

	got, err := Probed(env)
	if err != nil {
		t.Fatal(err)
	}
	if got[with] != dir {
		t.Errorf("Probed: pid %d -> %q; want %q (all: %v)", with, got[with], dir, got)
	}
	if d, ok := got[empty]; !ok || d != "" {
		t.Errorf("Probed: pid %d (variable set, empty) -> %q, %v; want listed with \"\"", empty, d, ok)
	}
	if d, ok := got[without]; ok {
		t.Errorf("Probed: pid %d without the variable listed with %q", without, d)
	}
	for pid, d := range got {
		if pid != with && pid != empty && strings.HasPrefix(d, filepath.Dir(dir)) {
			t.Errorf("Probed: pid %d -> %q: a process this test did not start", pid, d)
		}
	}
}

// Environ and Owner keep the shape of their errors: a pid that does not
// exist is fs.ErrNotExist (resolve tells "no such process" from "not yours"
// by it).
func TestEnvironOwnerErrors(t *testing.T) {
	const gone = 1 << 22
	if _, _, err := Environ(gone, "PATH"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Environ of no pid: got %v; want fs.ErrNotExist", err)
	}
	if uid, err := Owner(gone); !errors.Is(err, fs.ErrNotExist) || uid != -1 {
		t.Errorf("Owner of no pid: got %d, %v; want -1, fs.ErrNotExist", uid, err)
	}
	_, id := sleeper(t)
	if uid, err := Owner(id.PID); err != nil || uid != os.Getuid() {
		t.Errorf("Owner of a child: got %d, %v; want %d", uid, err, os.Getuid())
	}
	if v, ok, err := Environ(id.PID, "LOCKWATCH_LIVENESS_TEST_NEVER_SET"); err != nil || ok || v != "" {
		t.Errorf("Environ of an unset name: got %q, %v, %v; want \"\", false, nil", v, ok, err)
	}
}

// ForRun proves membership only where there is a run: a directory with no
// arena yet gives a plain System, an arena that is a symbolic link is
// refused, and a run's Maps tells a member from a process that is not one.
func TestForRunAndMaps(t *testing.T) {
	if s := ForRun(t.TempDir()); s.Run != nil {
		t.Errorf("ForRun of a directory without an arena: got a Run for %s; want none", s.Run.Dir())
	}
	odd := t.TempDir()
	if err := os.Symlink("/dev/null", filepath.Join(odd, arena.ArenaFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRun(odd); err == nil {
		t.Errorf("NewRun with a symlinked arena: got no error; want one")
	}
	if s := ForRun(odd); s.Run != nil {
		t.Errorf("ForRun with a symlinked arena: got a Run; want none")
	}

	dir, _, _ := newRun(t)
	s := ForRun(dir)
	if s.Run == nil || s.Run.Dir() != dir {
		t.Fatalf("ForRun(%s): got %+v; want a Run of that directory", dir, s.Run)
	}
	_, member := child(t, "member", dir)
	_, other := sleeper(t)
	if ok, err := s.Run.Maps(member.PID); !ok || err != nil {
		t.Errorf("Maps of a member: got %v, %v; want true", ok, err)
	}
	if ok, err := s.Run.Maps(other.PID); ok || err != nil {
		t.Errorf("Maps of an unrelated process: got %v, %v; want false", ok, err)
	}
	if ok, err := s.Run.Maps(1 << 22); ok || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Maps of no pid: got %v, %v; want false, fs.ErrNotExist", ok, err)
	}
}

// Add opens a pidfd first and checks the start time after: a pid that is
// gone, a zombie and a reused pid (alive, another start time) are reported
// dead by the next Wait, and never
// watched (a reused pid's new process is not the one that was added).
func TestWatcherAddDead(t *testing.T) {
	_, alive := sleeper(t)
	_, zombie := exitedUnreaped(t, "true")
	tests := []struct {
		name string
		id   proc.Identity
	}{
		{"gone", proc.Identity{PID: 1 << 22, Start: 1}},
		{"zombie", zombie},
		{"reused", proc.Identity{PID: alive.PID, Start: alive.Start + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWatcher()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.Add(tt.id); err != nil {
				t.Fatal(err)
			}
			if err := w.Add(tt.id); err != nil { // twice: harmless
				t.Fatal(err)
			}
			if err := w.Add(alive); err != nil {
				t.Fatal(err)
			}
			// The live process is watched too: only the death found at
			// Add ends this Wait.
			died, err := w.Wait(probablyStillBlocked)
			if err != nil || len(died) != 1 || died[0] != tt.id {
				t.Fatalf("got %v, %v; want [%v]", died, err, tt.id)
			}
			if died, err := w.Wait(0); err != nil || len(died) != 0 {
				t.Errorf("second Wait: got %v, %v; want nothing (reported once, the live one still watched)", died, err)
			}
		})
	}
}

// Wake ends a Wait in progress from another goroutine, and one that comes
// after it, with no death.
func TestWatcherWake(t *testing.T) {
	cmd, alive := sleeper(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(alive); err != nil {
		t.Fatal(err)
	}
	// wait runs a Wait that only a Wake (or the watched process's death)
	// ends, calling wake once it is started; if Wake does not end it, the
	// watched process is killed so that the Wait returns.
	wait := func(what string, wake func()) {
		t.Helper()
		type result struct {
			died []proc.Identity
			err  error
		}
		got := make(chan result, 1)
		go func() {
			died, err := w.Wait(time.Hour)
			got <- result{died, err}
		}()
		wake()
		select {
		case r := <-got:
			if r.err != nil || len(r.died) != 0 {
				t.Errorf("%s: got %v, %v; want no death", what, r.died, r.err)
			}
		case <-time.After(probablyStillBlocked):
			cmd.Process.Kill()
			<-got
			t.Fatalf("%s: Wait did not return after Wake", what)
		}
	}
	// The Wait may not be in poll(2) yet when Wake is called: the wake-up
	// is kept in the pipe, so either way it returns.
	wait("Wait in progress", w.Wake)
	w.Wake()
	wait("Wait after a Wake", func() {})
}

// When no descriptor can be opened (EMFILE), NewWatcher fails, and Add
// fails with an error (whether pidfd_open or the read of the start time
// after it fails): a process that cannot be watched is never reported dead,
// and the caller's interval is left to notice its death. Run in a child
// process, whose descriptor limit the test lowers.
func TestWatcherNoDescriptors(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=nofd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"newwatcher: pipe2: too many open files",
		"pidfd: liveness: pidfd_open",
		"stat: too many open files",
		"waits: 0 0",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child said:\n%s\nwant a line with %q", out, want)
		}
	}
}

// noFDRole is TestWatcherNoDescriptors's child: it watches its parent (alive
// for the whole test) with no descriptor to spare, then with one (the pidfd
// opens, the read of /proc/PID/stat after it cannot), and prints what each
// step said.
func noFDRole() int {
	w, err := NewWatcher()
	if err != nil {
		report("error", err)
		return 1
	}
	defer w.Close()
	parent, err := proc.ReadStat(os.Getppid())
	if err != nil {
		report("error", err)
		return 1
	}
	// The lowest free descriptor: with the limit there, no open succeeds;
	// one above it, one does.
	low, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		report("error", err)
		return 1
	}
	unix.Close(low)
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		report("error", err)
		return 1
	}
	limit := func(n int) {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(n), Max: saved.Max}); err != nil {
			report("error", err)
			os.Exit(1)
		}
	}

	limit(low)
	_, err = NewWatcher()
	report("newwatcher:", err)
	errPidfd := w.Add(parent.Identity())
	limit(low + 1)
	errStat := w.Add(parent.Identity())
	unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	report("pidfd:", errPidfd)
	report("stat:", errStat)
	died1, _ := w.Wait(0)
	// Now it can be watched.
	if err := w.Add(parent.Identity()); err != nil {
		report("error", err)
		return 1
	}
	died2, _ := w.Wait(0)
	report("waits:", len(died1), len(died2))
	return 0
}
