package filelocksrc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/lockstate"
)

// roleEnv names the role the test binary plays when a test starts it as a
// helper process.
const roleEnv = "FILELOCKSRC_TEST_ROLE"

// TestMain runs the helper roles: "recvfd" receives one descriptor over
// the unix socket it inherited as fd 3 (SCM_RIGHTS), says "ok" on stdout,
// and sleeps holding it until it is killed (or a minute has passed).
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "swapfd" {
		os.Exit(swapFd())
	}
	if os.Getenv(roleEnv) == "recvfd" {
		buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
		if err != nil {
			os.Exit(2)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			os.Exit(2)
		}
		if fds, err := unix.ParseUnixRights(&msgs[0]); err != nil || len(fds) != 1 {
			os.Exit(2)
		}
		os.Stdout.WriteString("ok\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// start starts cmd and kills it when the test ends.
func start(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// inheritor starts a process that inherits f (as its fd 3), and with it
// f's open file description, and sleeps.
func inheritor(t *testing.T, f *os.File) int {
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	return start(t, cmd)
}

// receiver starts a process to which f's descriptor is passed over a unix
// socket (SCM_RIGHTS), and returns once it holds it.
func receiver(t *testing.T, f *os.File) int {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(sp[0]), "socket"), os.NewFile(uintptr(sp[1]), "socket")
	defer mine.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=recvfd")
	cmd.ExtraFiles = []*os.File{theirs}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pid := start(t, cmd)
	theirs.Close()
	if err := unix.Sendmsg(sp[0], []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("the receiver said %q, %v", line, err)
	}
	return pid
}

// flockWaiter starts flock(1) on path, which blocks behind the lock held
// on it, and returns once the kernel lists its request.
func flockWaiter(t *testing.T, path string) int {
	t.Helper()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1) (util-linux) here")
	}
	pid := start(t, exec.Command("flock", path, "true"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range Parse(b, Limits{}).Entries {
			if e.Depth > 0 && e.PID == pid {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("flock(1), pid %d, not blocked on %s after 10s", pid, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockedFile creates a file in a test directory and flocks it through a
// descriptor of this process.
func lockedFile(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return path, f
}

// holdersOf reads the knot of pid twice (a report's two reads) and returns
// the pids holding the flock lock on path at each, sorted, with the
// lock's facts.
func holdersOf(t *testing.T, s *Source, path string) ([]int, []lockstate.Fact) {
	t.Helper()
	snap, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range snap.Locks {
		if l.Kind != KindFlock || l.Name != path {
			continue
		}
		var pids []int
		for _, h := range l.Holders {
			if h.PID != 0 {
				pids = append(pids, h.PID)
			}
		}
		slices.Sort(pids)
		return pids, l.Facts.Extra
	}
	t.Fatalf("no flock lock on %s in the snapshot: %+v", path, snap)
	return nil, nil
}

// compared reports whether the Source's last read found pid's descriptors
// by comparing them with references (share.go), not by their files.
func compared(s *Source, pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[pid]
	return t != nil && t.refs != nil
}

func sorted(pids ...int) []int { return slices.Sorted(slices.Values(pids)) }

// A child that inherited the descriptor of a flock'ed file holds the lock
// as much as its parent: the comparison with the parent's descriptor
// finds it.
func TestShareForkedChild(t *testing.T) {
	path, f := lockedFile(t)
	child := inheritor(t, f)
	w := flockWaiter(t, path)
	s := New(w)
	for range 2 {
		got, _ := holdersOf(t, s, path)
		if want := sorted(os.Getpid(), child); !slices.Equal(got, want) {
			t.Fatalf("holders %v; want %v (this process and the child that inherited the descriptor)", got, want)
		}
	}
	if !compared(s, child) {
		t.Fatal("the child's descriptors were not compared with the reference: the test does not test the comparison")
	}
}

// A descriptor passed over a unix socket shares the open file, and the
// lock, with the sender's.
func TestSharePassedDescriptor(t *testing.T) {
	path, f := lockedFile(t)
	rcv := receiver(t, f)
	w := flockWaiter(t, path)
	s := New(w)
	got, _ := holdersOf(t, s, path)
	if want := sorted(os.Getpid(), rcv); !slices.Equal(got, want) {
		t.Fatalf("holders %v; want %v (this process and the one it passed the descriptor to)", got, want)
	}
	if !compared(s, rcv) {
		t.Fatal("the receiver's descriptors were not compared with the reference")
	}
	// The sender closes its descriptor: the taker /proc/locks names no
	// longer has the file open, the receiver alone holds the lock.
	f.Close()
	got, facts := holdersOf(t, New(w), path)
	if want := []int{rcv}; !slices.Equal(got, want) {
		t.Fatalf("holders %v after the sender closed its descriptor; want %v", got, want)
	}
	if !slices.ContainsFunc(facts, func(f lockstate.Fact) bool { return f.Name == "inherited" }) {
		t.Fatalf("no inherited fact: %+v", facts)
	}
}

// Another open of the same file is another open file description: a
// process with a descriptor on it holds nothing, even when the taker's
// first descriptor on the file is that one.
func TestShareTwoOpenFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	other, err := os.Create(path) // the lower descriptor: looked at first
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	child := inheritor(t, other)
	w := flockWaiter(t, path)
	s := New(w)
	got, _ := holdersOf(t, s, path)
	if want := []int{os.Getpid()}; !slices.Equal(got, want) {
		t.Fatalf("holders %v; want %v: pid %d has the file open through another open file description", got, want, child)
	}
	if !compared(s, child) {
		t.Fatal("the child's descriptors were not compared with the reference")
	}
}

// A flock'ed file kept open by a mapping alone (its descriptor closed)
// still holds its lock, through no descriptor: nobody is named its
// holder, not even its taker, which has the file open again through
// another open file description (and a child with it).
func TestShareMappedNoDescriptor(t *testing.T) {
	path, f := lockedFile(t)
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	f.Close()
	again, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	child := inheritor(t, again)
	w := flockWaiter(t, path)
	got, facts := holdersOf(t, New(w), path)
	if len(got) != 0 {
		t.Fatalf("holders %v; want none (the lock's open file has no descriptor; pid %d and this process have the file open through another)", got, child)
	}
	if !slices.ContainsFunc(facts, func(f lockstate.Fact) bool {
		return f.Name == "holder" && strings.HasPrefix(f.Value, "unknown")
	}) {
		t.Fatalf("no unknown-holder fact: %+v", facts)
	}
}

// A lock released and taken again between two reads through a new open
// file at the same descriptor number: the child that shares the old open
// file holds nothing any more, although the previous read found it on the
// reference's open file.
func TestShareRetakenBetweenReads(t *testing.T) {
	path, f := lockedFile(t)
	child := inheritor(t, f)
	s := New(os.Getpid())
	got, _ := holdersOf(t, s, path)
	if want := sorted(os.Getpid(), child); !slices.Equal(got, want) {
		t.Fatalf("holders %v; want %v", got, want)
	}
	if !compared(s, child) {
		t.Fatal("the child's descriptors were not compared with the reference")
	}
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	retake(t, path, fd)
	got, _ = holdersOf(t, s, path)
	if want := []int{os.Getpid()}; !slices.Equal(got, want) {
		t.Fatalf("holders %v after the lock was taken again through another open file at fd %d; want %v (pid %d shares the old one)", got, fd, want, child)
	}
}

// retake opens path again at descriptor fd (the open file that was there
// is closed) and flocks it: the lock taken again through a new open file
// at the same number.
func retake(t *testing.T, path string, fd int) {
	t.Helper()
	g, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(int(g.Fd()), fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

// A reference closed, or whose process is gone, fails every comparison
// with it: search says so (the read then names every file instead), never
// that the descriptor compared is on none of the references.
func TestSearchReferenceGone(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	closed := int(g.Fd())
	g.Close()
	me := os.Getpid()
	for _, ref := range []fdRef{{pid: me, fd: closed}, {pid: goneProcess(t), fd: 0}} {
		if _, err := search(me, int(f.Fd()), []ofdRef{{ref: ref}}); !errors.Is(err, errRefGone) {
			t.Errorf("search against %+v: %v; want errRefGone", ref, err)
		}
	}
	if j, err := search(me, int(f.Fd()), []ofdRef{{ref: fdRef{pid: me, fd: int(f.Fd())}}}); j != 0 || err != nil {
		t.Errorf("search of a reference's own descriptor: %d, %v; want 0", j, err)
	}
}

// swapFd is the "swapfd" role: it says "ready" on stdout, receives one
// descriptor over the unix socket it inherited as fd 3, puts it at its
// fd 4 in place of the file there (dup3: the same descriptor numbers
// before and after), closes the received number, says "ok", and sleeps
// until it is killed (or a minute has passed).
func swapFd() int {
	os.Stdout.WriteString("ready\n")
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
	if err != nil {
		return 2
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return 2
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return 2
	}
	if err := unix.Dup3(fds[0], 4, 0); err != nil {
		return 2
	}
	unix.Close(fds[0])
	os.Stdout.WriteString("ok\n")
	time.Sleep(time.Minute)
	return 0
}

// fdNumbers lists pid's descriptor numbers.
func fdNumbers(t *testing.T, pid int) []string {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// A descriptor closed and opened again at the same number, onto the open
// file of a flock'ed file (passed over a unix socket), between two reads
// of one Source: the process has the same descriptor numbers at both
// reads, and holds the lock at the second. It is named a holder there,
// whatever its descriptor's file was at the first read: another file, or
// the locked file through another open file description (the same number
// and inode, another open file).
func TestShareSwappedBetweenReads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(t *testing.T, path string) *os.File
	}{
		{"other file", func(t *testing.T, path string) *os.File {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"other open file", func(t *testing.T, path string) *os.File {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, f := lockedFile(t)
			w := flockWaiter(t, path)
			first := tc.first(t, path)
			sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			mine, theirs := os.NewFile(uintptr(sp[0]), "socket"), os.NewFile(uintptr(sp[1]), "socket")
			defer mine.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), roleEnv+"=swapfd")
			cmd.ExtraFiles = []*os.File{theirs, first}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			pid := start(t, cmd)
			theirs.Close()
			first.Close()
			said := bufio.NewReader(out)
			if line, err := said.ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("the child said %q, %v", line, err)
			}
			s := New(w)
			got, _ := holdersOf(t, s, path)
			if want := []int{os.Getpid()}; !slices.Equal(got, want) {
				t.Fatalf("holders %v before the swap; want %v", got, want)
			}
			before := fdNumbers(t, pid)
			if err := unix.Sendmsg(sp[0], []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
				t.Fatal(err)
			}
			if line, err := said.ReadString('\n'); err != nil || line != "ok\n" {
				t.Fatalf("the child said %q, %v", line, err)
			}
			if after := fdNumbers(t, pid); !slices.Equal(before, after) {
				t.Fatalf("the child's descriptors %v changed to %v: the test does not test a table with the same numbers", before, after)
			}
			got, _ = holdersOf(t, s, path)
			if want := sorted(os.Getpid(), pid); !slices.Equal(got, want) {
				t.Fatalf("holders %v after pid %d put the lock's open file at its fd 4; want %v", got, pid, want)
			}
		})
	}
}
