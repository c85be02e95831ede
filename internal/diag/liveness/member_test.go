package liveness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/app/forge"
	"github.com/lockwatch/lockwatch/internal/app/testchild"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/lockreg"
)

const (
	roleEnv = "LOCKWATCH_LIVENESS_TEST_ROLE"
	dirEnv  = "LOCKWATCH_LIVENESS_TEST_DIR"
)

// runRole is a child process's body: it joins the run in dir in some way,
// says "ready", and waits for its stdin to close.
func runRole(role, dir string) int {
	switch role {
	case "member", "closed", "exec":
		r, err := lockreg.Open(dir, lockreg.Options{Role: role})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		if role == "closed" {
			r.Close()
		}
		if role == "exec" {
			// The program that joined the run is replaced: same pid,
			// same start time, none of its mappings.
			fmt.Println("ready")
			sleep, _ := exec.LookPath("sleep")
			err := syscall.Exec(sleep, []string{"sleep", "60"}, os.Environ())
			fmt.Println("error", err)
			return 1
		}
	case "reader":
		// Maps the arena read-only and shared, as lockwatch does.
		f, err := os.Open(filepath.Join(dir, arena.ArenaFile))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fi, _ := f.Stat()
		if _, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED); err != nil {
			fmt.Println("error", err)
			return 1
		}
	case "execlater":
		// A member that, told to, replaces itself with a program that is
		// not (this binary in role "execd"): same pid, same start time.
		if _, err := lockreg.Open(dir, lockreg.Options{Role: role}); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		in := bufio.NewReader(os.Stdin)
		if line, _ := in.ReadString('\n'); line != "exec\n" {
			return 0
		}
		env := []string{roleEnv + "=execd"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, roleEnv+"=") {
				env = append(env, kv)
			}
		}
		err := syscall.Exec(os.Args[0], os.Args, env)
		fmt.Println("error", err)
		return 1
	case "execd":
		// Says so, then answers each line until its stdin closes.
		fmt.Println("execd")
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			fmt.Println("pong")
		}
		return 0
	case "dropin", "dropin-other":
		// Joins as a program that only imports the drop-in sync does: it
		// makes its own arena file of the run and maps it shared and
		// writable; "dropin-other" maps one under another pid's name.
		pid := os.Getpid()
		if role == "dropin-other" {
			pid = 1
		}
		f, err := os.OpenFile(filepath.Join(dir, inproc.ArenaFile(pid)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			err = f.Truncate(4096)
		}
		if err == nil {
			_, err = syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
	case "nofd":
		return noFDRole() // system_test.go
	default:
		fmt.Println("unknown role", role)
		return 2
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// child starts the test binary in role, waits for "ready", and returns it
// with its identity.
func child(t *testing.T, role, dir string) (*exec.Cmd, proc.Identity) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, dirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	testchild.StartReady(t, cmd)
	st, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, st.Identity()
}

// newRun makes a run under t.TempDir() with one process in it (this one,
// which closes at once), and returns it with the arena open for forging.
func newRun(t *testing.T) (string, *Run, *forge.Arena) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	r, err := lockreg.Open(dir, lockreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	run, err := NewRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	fa, err := forge.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fa.Close() })
	return dir, run, fa
}

// Only a process that maps the run's arena shared and writable is the
// run's: pid plus start time in the process table proves nothing. Each case
// checks what reports say (CheckAll, Check) and that Kill leaves everything
// but a member alone.
func TestMembership(t *testing.T) {
	dir, run, fa := newRun(t)
	sys := System{Run: run}

	_, member := child(t, "member", dir)
	_, closed := child(t, "closed", dir)
	_, reader := child(t, "reader", dir)
	_, execd := child(t, "exec", dir)
	_, unrelated := sleeper(t)    // named by a forged running entry
	_, closedForged := sleeper(t) // named by a forged exited entry
	_, neverNamed := sleeper(t)   // in no entry at all
	_, selfForged := child(t, "reader", dir)
	_, dropin := child(t, "dropin", dir)
	_, dropinOther := child(t, "dropin-other", dir)
	for _, f := range []struct {
		id    proc.Identity
		state uint32
	}{{reader, forge.Running}, {unrelated, forge.Running}, {closedForged, forge.Exited}, {selfForged, forge.Running}} {
		if _, err := fa.AddProcess(f.id, f.state); err != nil {
			t.Fatal(err)
		}
	}

	const (
		spared = iota // Kill says ErrNotMember and signals nothing
		killed        // Kill signals it
		either        // a member while it maps the arena
		dead          // nothing to kill
	)
	tests := []struct {
		name string
		id   proc.Identity
		want proc.Status
		kill int
	}{
		{"member", member, proc.Alive, killed},
		// Closed its registry: still runs, so never reported dead. It is
		// a member while it keeps its mapping (Close does, before slots
		// are reclaimed: issue 8 item 3), not after.
		{"closed its registry", closed, proc.Alive, either},
		{"forged exited entry", closedForged, proc.Alive, spared},
		// Maps the arena read-only, as lockwatch does: never counts.
		{"read-only mapping", reader, proc.Reused, spared},
		{"another read-only mapping", selfForged, proc.Reused, spared},
		// A forged running entry naming an unrelated live process, and a
		// same-tick reused pid, look the same: alive by pid and start
		// time, not mapping the arena, never closed.
		{"forged running entry", unrelated, proc.Reused, spared},
		{"in no entry", neverNamed, proc.Reused, spared},
		// Joined by its drop-in arena alone (no probe, no lockreg): its own
		// arena file of the run proves it; another pid's does not.
		{"drop-in arena", dropin, proc.Alive, killed},
		{"another pid's drop-in arena", dropinOther, proc.Reused, spared},
		// exec'd: the program that joined is gone (documented decision).
		{"exec'd", execd, proc.Reused, spared},
		{"gone", proc.Identity{PID: 1 << 22, Start: 1}, proc.Gone, dead},
	}
	ids := make([]proc.Identity, len(tests))
	for i, tt := range tests {
		ids[i] = tt.id
	}
	all := sys.CheckAll(ids)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := all[tt.id]; got != tt.want {
				t.Errorf("CheckAll: got %v; want %v", got, tt.want)
			}
			if got, err := sys.Check(tt.id); got != tt.want {
				t.Errorf("Check: got %v, %v; want %v", got, err, tt.want)
			}
			err := run.Kill(tt.id)
			switch {
			case tt.kill == either:
				if err != nil && !errors.Is(err, ErrNotMember) {
					t.Errorf("Kill: %v", err)
				}
				return
			case tt.kill == spared && !errors.Is(err, ErrNotMember):
				t.Errorf("Kill: got %v; want ErrNotMember", err)
			case tt.kill != spared && err != nil:
				t.Errorf("Kill: %v", err)
			}
			if tt.kill == dead {
				return
			}
			// Wait for a killed process to be a zombie (the cleanup
			// reaps it); check that every other one still lives.
			st, _ := proc.Check(tt.id)
			if tt.kill == killed {
				w, err := NewWatcher()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				w.Add(tt.id)
				if died, err := w.Wait(probablyStillBlocked); err != nil || len(died) != 1 {
					t.Fatalf("member not dead after Kill: %v, %v", died, err)
				}
			} else if st != proc.Alive {
				t.Errorf("after Kill: pid %d is %v; want it untouched", tt.id.PID, st)
			}
		})
	}
}

// Kill refuses a process whose start time differs (a reused pid), even if
// that process maps the arena.
func TestKillChecksIdentity(t *testing.T) {
	dir, run, _ := newRun(t)
	_, member := child(t, "member", dir)
	if err := run.Kill(proc.Identity{PID: member.PID, Start: member.Start + 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := proc.Check(member); st != proc.Alive {
		t.Fatalf("got %v; want the process untouched", st)
	}
}

// The maps parser: device and inode, rw-s only, long lines, the bound.
func TestScanMaps(t *testing.T) {
	r := &Run{dev: uint64(0x0a<<8 | 0x03), ino: 1234} // major 0a, minor 03 in the old encoding
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, maps string
		want       bool
	}{
		{"other device", "7f00-7f10 rw-s 00000000 00:0a 1234 /dev/shm/run/arena\n", false},
		{"match", "7f00-7f10 rw-s 00000000 0a:03 1234 /dev/shm/run/arena\n", true},
		{"deleted", "7f00-7f10 rw-s 00000000 0a:03 1234 /dev/shm/run/arena (deleted)\n", true},
		{"read-only", "7f00-7f10 r--s 00000000 0a:03 1234 /dev/shm/run/arena\n", false},
		{"private", "7f00-7f10 rw-p 00000000 0a:03 1234 /dev/shm/run/arena\n", false},
		{"other inode", "7f00-7f10 rw-s 00000000 0a:03 1235 /dev/shm/run/arena\n", false},
		{"after a long line", "7f00-7f10 r-xp 00000000 08:01 99 /" + long + "\n7f00-7f10 rw-s 00000000 0a:03 1234 /a\n", true},
		{"no newline at the end", "7f00-7f10 rw-s 00000000 0a:03 1234", true},
		{"garbage", "\x00\x01 zz\n\n---- rw-s x y z\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := r.scanMaps(strings.NewReader(tt.maps))
			if got != tt.want || err != nil {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, any, _ := r.scanMaps(strings.NewReader("")); any {
		t.Errorf("an empty maps file has mappings")
	}
	if _, _, err := r.scanMaps(io.LimitReader(infinite{}, maxMapsBytes+1)); err == nil {
		t.Errorf("no error past %d bytes", maxMapsBytes)
	}
}

// infinite is an endless maps file of lines that do not match.
type infinite struct{}

func (infinite) Read(b []byte) (int, error) {
	line := "7f00-7f10 r-xp 00000000 08:01 99 /usr/lib/x\n"
	for i := range b {
		b[i] = line[i%len(line)]
	}
	return len(b), nil
}

// BenchmarkCheck is the price of the membership proof: one check of a live
// member by pid and start time only, and with the run (its mappings read).
func BenchmarkCheck(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "run")
	r, err := lockreg.Open(dir, lockreg.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	run, err := NewRun(dir)
	if err != nil {
		b.Fatal(err)
	}
	self := proc.Self() // maps the arena: a member
	for _, bm := range []struct {
		name string
		sys  System
	}{{"pid+start", System{}}, {"membership", System{Run: run}}} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if st, err := bm.sys.Check(self); st != proc.Alive {
					b.Fatalf("got %v, %v; want alive", st, err)
				}
			}
		})
	}
}

// talker is a child whose stdin and stdout the test speaks through.
type talker struct {
	cmd *exec.Cmd
	id  proc.Identity
	in  io.WriteCloser
	out *bufio.Reader
}

// say writes line to the child and returns its answer.
func (c *talker) say(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatalf("pid %d: %v", c.id.PID, err)
	}
	got, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("pid %d: no answer to %q: %v", c.id.PID, line, err)
	}
	return strings.TrimSpace(got)
}

// execLater starts a member of the run in dir that execs a program that is
// not a member when told "exec".
func execLater(t *testing.T, dir string) *talker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=execlater", dirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := &talker{cmd: cmd, in: in, out: bufio.NewReader(out)}
	testchild.ExpectReady(t, cmd, c.out)
	st, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	c.id = st.Identity()
	return c
}

// setHook sets testHookProved for the test.
func setHook(t *testing.T, f func(pid int)) {
	t.Helper()
	testHookProved = f
	t.Cleanup(func() { testHookProved = nil })
}

// TestKillExecInTheWindow: a member that execs a program that is not one
// after Kill proved its membership, and before the signal, is not killed
// (and is left running): the hook widens the window until the exec is done.
// Before the stop and the second proof, Kill SIGKILLed it.
func TestKillExecInTheWindow(t *testing.T) {
	dir, run, _ := newRun(t)
	c := execLater(t, dir)
	setHook(t, func(pid int) {
		if got := c.say(t, "exec"); got != "execd" {
			t.Errorf("after exec: %q; want execd", got)
		}
	})
	err := run.Kill(c.id)
	if !errors.Is(err, ErrNotMember) {
		t.Errorf("Kill: got %v; want ErrNotMember", err)
	}
	if st, _ := proc.ReadStat(c.id.PID); st.State == 'T' || st.State == 'Z' {
		t.Fatalf("after Kill: state %c; want it running", st.State)
	}
	if got := c.say(t, "ping"); got != "pong" { // it runs: not killed, not left stopped
		t.Errorf("after Kill: %q; want pong", got)
	}
}

// stop stops pid and waits until every thread of it is.
func stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := waitStopped(fd, pid); err != nil {
		t.Fatal(err)
	}
}

// TestKillStoppedBySomeoneElse: a process stopped by someone else before
// Kill, which exec'd a program that is not a member, is left stopped (Kill
// does not continue what it did not stop); a stopped member is killed.
func TestKillStoppedBySomeoneElse(t *testing.T) {
	dir, run, _ := newRun(t)
	c := execLater(t, dir)
	setHook(t, func(pid int) {
		if got := c.say(t, "exec"); got != "execd" {
			t.Errorf("after exec: %q; want execd", got)
		}
		stop(t, pid)
	})
	if err := run.Kill(c.id); !errors.Is(err, ErrNotMember) {
		t.Errorf("Kill: got %v; want ErrNotMember", err)
	}
	if st, _ := proc.ReadStat(c.id.PID); st.State != 'T' {
		t.Errorf("after Kill: state %c; want it still stopped (T)", st.State)
	}
	syscall.Kill(c.id.PID, syscall.SIGCONT)
	if got := c.say(t, "ping"); got != "pong" {
		t.Errorf("continued: %q; want pong", got)
	}

	testHookProved = nil
	m := execLater(t, dir)
	stop(t, m.id.PID)
	if err := run.Kill(m.id); err != nil {
		t.Fatalf("Kill of a stopped member: %v", err)
	}
	if err := m.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stopped member: %v; want it killed", err)
	}
}

// TestKillTraced: a member under a tracer is not killed: the tracer can
// resume it at any moment, so no stop holds the proof.
func TestKillTraced(t *testing.T) {
	dir, run, _ := newRun(t)
	c := execLater(t, dir)
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(c.id.PID); err != nil {
		t.Skipf("cannot trace a child here: %v", err)
	}
	defer unix.PtraceDetach(c.id.PID)
	if err := run.Kill(c.id); !errors.Is(err, ErrTraced) {
		t.Errorf("Kill: got %v; want ErrTraced", err)
	}
	if st, _ := proc.Check(c.id); st != proc.Alive {
		t.Errorf("after Kill: %v; want it alive", st)
	}
}

// NewRun finds the arena through the checked run directory, as every file
// of a run is found: a symbolic link to a run, or an arena that is a
// symbolic link, names no run.
func TestNewRunRefusesLinks(t *testing.T) {
	dir, _, _ := newRun(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRun(link); !errors.Is(err, lockreg.ErrSymlink) {
		t.Errorf("NewRun of a link to a run: %v; want ErrSymlink", err)
	}
	other := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, arena.ArenaFile), filepath.Join(other, arena.ArenaFile)); err != nil {
		t.Fatal(err)
	}
	if r, err := NewRun(other); err == nil {
		t.Errorf("NewRun of a run whose arena is a link: %+v; want an error", r)
	}
}
