package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/source/filelocksrc"
	"github.com/lockwatch/lockwatch/report"
)

// fileLockRole is a process driven line by line on its stdin, for the file
// lock tests: it answers "ok" to each command it has done, and "asking"
// before one that may block.
//
//	open NAME PATH           open (creating) PATH as NAME
//	flock NAME ex|sh         flock(2), blocking
//	posix|ofd NAME w|r START LEN   fcntl F_SETLKW / F_OFD_SETLKW
//	posixmany NAME N         N one-byte POSIX write locks on NAME, at 0, 2, 4...
//	flockmany DIR N          flock N files DIR/0, DIR/1...
//	spawn NAME               start a child that inherits NAME as its fd 3 and sleeps; says "child PID"
//	exit                     exit at once, closing every descriptor
//
// The "filelock-child" role sleeps, holding what it inherited, until it
// is killed (or a minute has passed).
func fileLockRole(role string) int {
	if role == "filelock-child" {
		time.Sleep(6 * probablyStillBlocked)
		return 0
	}
	files := map[string]*os.File{}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "open":
			files[f[1]], err = os.OpenFile(f[2], os.O_RDWR|os.O_CREATE, 0o600)
		case "flock":
			how := unix.LOCK_EX
			if f[2] == "sh" {
				how = unix.LOCK_SH
			}
			fmt.Println("asking")
			err = unix.Flock(int(files[f[1]].Fd()), how)
		case "posix", "ofd":
			cmd := unix.F_SETLKW
			if f[0] == "ofd" {
				cmd = unix.F_OFD_SETLKW
			}
			lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
			if f[2] == "r" {
				lk.Type = unix.F_RDLCK
			}
			lk.Start, _ = strconv.ParseInt(f[3], 10, 64)
			lk.Len, _ = strconv.ParseInt(f[4], 10, 64)
			fmt.Println("asking")
			err = unix.FcntlFlock(files[f[1]].Fd(), cmd, &lk)
		case "posixmany": // posixmany NAME N: N one-byte POSIX write locks, at 0, 2, 4...
			n, _ := strconv.Atoi(f[2])
			for i := 0; i < n && err == nil; i++ {
				lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(2 * i), Len: 1}
				err = unix.FcntlFlock(files[f[1]].Fd(), unix.F_SETLK, &lk)
			}
		case "flockmany": // flockmany DIR N: N files of DIR, each flock'ed, named 0, 1, 2...
			n, _ := strconv.Atoi(f[2])
			for i := 0; i < n && err == nil; i++ {
				var fl *os.File
				if fl, err = os.OpenFile(filepath.Join(f[1], strconv.Itoa(i)), os.O_RDWR|os.O_CREATE, 0o600); err == nil {
					files[fmt.Sprintf("%s/%d", f[1], i)] = fl
					err = unix.Flock(int(fl.Fd()), unix.LOCK_EX|unix.LOCK_NB)
				}
			}
		case "spawn":
			c := exec.Command(os.Args[0], "-test.run=^$")
			c.Env = append(cleanEnv(), roleEnv+"=filelock-child")
			c.ExtraFiles = []*os.File{files[f[1]]}
			if err = c.Start(); err == nil {
				fmt.Println("child", c.Process.Pid)
			}
		case "exit":
			os.Exit(0)
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ok")
	}
	return 0
}

// locker is a fileLockRole process.
type locker struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func newLocker(t testing.TB) *locker {
	t.Helper()
	cmd, in, out := child(t, "filelock", "")
	expectLine(t, out, "ready")
	return &locker{t, cmd, in, out}
}

func (l *locker) pid() int { return l.cmd.Process.Pid }

// do sends a command that must not block and waits for its "ok".
func (l *locker) do(cmd string) {
	l.t.Helper()
	l.send(cmd)
	if word, _, _ := strings.Cut(cmd, " "); word == "flock" || word == "posix" || word == "ofd" {
		expectLine(l.t, l.out, "asking")
	}
	expectLine(l.t, l.out, "ok")
}

// ask sends a lock request that blocks.
func (l *locker) ask(cmd string) {
	l.t.Helper()
	l.send(cmd)
	expectLine(l.t, l.out, "asking")
}

func (l *locker) send(cmd string) {
	l.t.Helper()
	if _, err := fmt.Fprintln(l.in, cmd); err != nil {
		l.t.Fatal(err)
	}
}

// awaitFileWaiters waits until the kernel lists n requests blocked on the
// file at path.
func awaitFileWaiters(t testing.TB, path string, n int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, e := range filelocksrc.Parse(b, filelocksrc.Limits{}).Entries {
			if e.Depth > 0 && e.Inode == st.Ino {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests blocked on %s after %s; want %d", got, path, probablyStillBlocked, n)
		}
		time.Sleep(quiescent)
	}
}

// attachFilesJSON runs 'lockwatch attach -o json' and decodes its report.
func attachFilesJSON(t testing.TB, args ...string) (int, *report.Report, string) {
	t.Helper()
	code, out, errOut := lockwatch(t, append([]string{"attach", "-o", "json"}, args...)...)
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("attach %v: exit %d, not a JSON report (%v): %s\nstderr: %s", args, code, err, out, errOut)
	}
	return code, &r, errOut
}

// goStack is the report's row of pid's goroutines in role read from its
// memory; nil if none.
func goStack(r *report.Report, pid int, role string) *report.StackRow {
	for i, s := range r.Stacks {
		if s.PID == pid && s.Role == role && s.Source == "memory" {
			return &r.Stacks[i]
		}
	}
	return nil
}

// goStacks are the report's rows read from memory, for messages.
func goStacks(r *report.Report) []report.StackRow {
	var out []report.StackRow
	for _, s := range r.Stacks {
		if s.Source == "memory" {
			out = append(out, s)
		}
	}
	return out
}

// framesHave reports whether each of funcs is the end of a frame's
// function name.
func framesHave(row *report.StackRow, funcs ...string) bool {
	for _, fn := range funcs {
		if !slices.ContainsFunc(row.Frames, func(f report.FrameJSON) bool { return strings.HasSuffix(f.Func, fn) }) {
			return false
		}
	}
	return true
}

// pidsOf are the parties' pids, sorted.
func pidsOf(ps []report.Party) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	slices.Sort(out)
	return out
}

// pidsOf2 are two lockers' pids, sorted.
func pidsOf2(a, b *locker) []int { return []int{min(a.pid(), b.pid()), max(a.pid(), b.pid())} }

func findingOf(r *report.Report, k report.Kind) *report.Finding {
	for i := range r.Findings {
		if r.Findings[i].Kind == k {
			return &r.Findings[i]
		}
	}
	return nil
}

func factOf(r *report.Report, lock, name string) string {
	for _, l := range r.Locks {
		if l.Name != lock {
			continue
		}
		for _, f := range l.Facts {
			if f.Name == name {
				return f.Value
			}
		}
	}
	return ""
}

func TestAttachFlockCycle(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.lock"), filepath.Join(dir, "b.lock")
	p, q := newLocker(t), newLocker(t)
	for _, l := range []*locker{p, q} {
		l.do("open a " + a)
		l.do("open b " + b)
	}
	p.do("flock a ex")
	q.do("flock b ex")
	p.ask("flock b ex")
	q.ask("flock a ex")
	awaitFileWaiters(t, a, 1)
	awaitFileWaiters(t, b, 1)

	code, r, _ := attachFilesJSON(t, strconv.Itoa(p.pid()))
	if code != ExitDeadlock {
		t.Errorf("exit %d; want %d", code, ExitDeadlock)
	}
	f := findingOf(r, report.Cycle)
	if f == nil {
		t.Fatalf("no cycle finding: %+v", r.Findings)
	}
	if f.LockKind != filelocksrc.KindFlock || f.Lock != a {
		t.Errorf("cycle on %s %q; want flock %q", f.LockKind, f.Lock, a)
	}
	var steps []report.Party
	for _, st := range f.Cycle {
		steps = append(steps, st.Party)
	}
	if got, want := pidsOf(steps), pidsOf2(p, q); !slices.Equal(got, want) {
		t.Errorf("cycle of pids %v; want %v", got, want)
	}
	for _, k := range []report.Kind{report.DeadHolder, report.StuckHolder, report.StaleWaiter} {
		if findingOf(r, k) != nil {
			t.Errorf("a %s finding in a cycle of live processes: %+v", k, r.Findings)
		}
	}
	// Both are Go processes: the goroutine of each blocked in flock(2),
	// read from its memory, waits for the other's lock.
	for _, w := range []struct {
		l    *locker
		lock string
	}{{p, b}, {q, a}} {
		if row := goStack(r, w.l.pid(), "waiter"); row == nil || row.Lock != w.lock || !framesHave(row, "golang.org/x/sys/unix.Flock", "cli.fileLockRole") {
			t.Errorf("pid %d: goroutine rows %+v; want its goroutine in unix.Flock, called by fileLockRole, waiting for %q", w.l.pid(), goStacks(r), w.lock)
		}
	}

	// The loop starts at its smallest lock, a, which q waits for.
	code, out, _ := lockwatch(t, "attach", strconv.Itoa(q.pid()))
	want := fmt.Sprintf("CYCLE 2 processes wait for each other: pid %d waits for %q -> pid %d waits for %q -> pid %d",
		q.pid(), a, p.pid(), b, q.pid())
	if code != ExitDeadlock || !strings.Contains(out, want) {
		t.Errorf("attach (table): exit %d; want %d and a line %q in:\n%s", code, ExitDeadlock, want, out)
	}
}

func TestAttachFlockStuckHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	h, w1, w2 := newLocker(t), newLocker(t), newLocker(t)
	for _, l := range []*locker{h, w1, w2} {
		l.do("open x " + path)
	}
	h.do("flock x ex")
	w1.ask("flock x ex")
	w2.ask("flock x sh")
	awaitFileWaiters(t, path, 2)

	code, r, errOut := attachFilesJSON(t, "--stuck-after=300ms", strconv.Itoa(w1.pid()))
	if code != ExitDeadlock {
		t.Errorf("exit %d; want %d", code, ExitDeadlock)
	}
	_ = errOut // whether attach had to look longer depends on how long its reads took
	f := findingOf(r, report.StuckHolder)
	if f == nil {
		t.Fatalf("no stuck-holder finding: %+v", r.Findings)
	}
	if f.Holder.PID != h.pid() || f.LockKind != filelocksrc.KindFlock || f.Lock != path {
		t.Errorf("stuck holder pid %d of %s %q; want pid %d of flock %q", f.Holder.PID, f.LockKind, f.Lock, h.pid(), path)
	}
	if time.Duration(f.Holder.For) < 300*time.Millisecond {
		t.Errorf("held for %v; want at least --stuck-after", time.Duration(f.Holder.For))
	}
	if got, want := pidsOf(f.Waiters), pidsOf2(w1, w2); !slices.Equal(got, want) {
		t.Errorf("waiters %v; want %v", got, want)
	}
	if !strings.HasPrefix(f.Doing, "S (sleeping)") {
		t.Errorf("doing %q; want the holder's state from /proc", f.Doing)
	}
	// The holder is a Go process: its goroutine blocked reading its
	// commands, read from its memory, is what it does while it holds the
	// lock; each waiter's goroutine is in flock(2).
	if row := goStack(r, h.pid(), "holder"); row == nil || !framesHave(row, "cli.fileLockRole") || !strings.Contains(f.Doing, "Go: goroutine") {
		t.Errorf("holder pid %d: goroutine rows %+v, doing %q; want its goroutine in fileLockRole, and doing to say it", h.pid(), goStacks(r), f.Doing)
	}
	for _, w := range []*locker{w1, w2} {
		if row := goStack(r, w.pid(), "waiter"); row == nil || row.Lock != path || !framesHave(row, "golang.org/x/sys/unix.Flock", "cli.fileLockRole") {
			t.Errorf("waiter pid %d: goroutine rows %+v; want its goroutine in unix.Flock", w.pid(), goStacks(r))
		}
	}
	var sources []string
	for _, s := range r.Stacks {
		sources = append(sources, s.Source)
	}
	if !slices.Contains(sources, "proc") {
		t.Errorf("stack sources %v; want the holder's and waiters' from /proc", sources)
	}
	code, out, _ := lockwatch(t, "attach", "--stuck-after=300ms", strconv.Itoa(w2.pid()))
	want := fmt.Sprintf("STUCK-HOLDER pid %d has held %q for ", h.pid(), path)
	if code != ExitDeadlock || !strings.Contains(out, want) || !strings.Contains(out, "while 2 processes wait for it\n  doing: S (sleeping)") {
		t.Errorf("attach (table): exit %d; want %d, and %q with 2 waiting processes and what it does, in:\n%s", code, ExitDeadlock, want, out)
	}
}

func TestAttachInheritedFlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	parent, w := newLocker(t), newLocker(t)
	parent.do("open x " + path)
	parent.do("flock x ex")
	parent.send("spawn x")
	line, _ := parent.out.ReadString('\n')
	childPID, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "child "))
	if err != nil {
		t.Fatalf("parent said %q; want its child's pid", line)
	}
	t.Cleanup(func() { unix.Kill(childPID, unix.SIGKILL) })
	expectLine(t, parent.out, "ok")
	parentPID := parent.pid()
	parent.send("exit")
	parent.cmd.Wait() // gone: only its child holds the open file now
	w.do("open x " + path)
	w.ask("flock x ex")
	awaitFileWaiters(t, path, 1)

	code, r, _ := attachFilesJSON(t, "--stuck-after=200ms", strconv.Itoa(w.pid()))
	if findingOf(r, report.DeadHolder) != nil {
		t.Errorf("a dead-holder finding for a lock its live child holds: %+v", r.Findings)
	}
	if len(r.Locks) != 1 || r.Locks[0].Holder == nil || r.Locks[0].Holder.PID != childPID || !r.Locks[0].Holder.Alive {
		t.Fatalf("locks %+v; want one, held by the child %d, alive", r.Locks, childPID)
	}
	want := fmt.Sprintf("taken by pid %d (now gone); held now by pid %d", parentPID, childPID)
	if got := factOf(r, path, "inherited"); !strings.HasPrefix(got, want) {
		t.Errorf("inherited fact %q; want it to start %q", got, want)
	}
	if f := findingOf(r, report.StuckHolder); code != ExitDeadlock || f == nil || f.Holder.PID != childPID {
		t.Errorf("exit %d, findings %+v; want the child stuck holding it", code, r.Findings)
	}
	_, out, _ := lockwatch(t, "attach", "--stuck-after=1ms", strconv.Itoa(w.pid()))
	if !strings.Contains(out, fmt.Sprintf("inherited taken by pid %d (now gone)", parentPID)) {
		t.Errorf("table report without the inherited fact:\n%s", out)
	}
}

func TestAttachPOSIXAndOFD(t *testing.T) {
	dir := t.TempDir()
	f, g := filepath.Join(dir, "records"), filepath.Join(dir, "ofd")
	h, wp, wo := newLocker(t), newLocker(t), newLocker(t)
	h.do("open f " + f)
	h.do("open g " + g)
	h.do("posix f w 0 10")
	h.do("ofd g r 0 0")
	wp.do("open f " + f)
	wp.ask("posix f w 5 1")
	wo.do("open g " + g)
	wo.ask("ofd g w 100 1")
	awaitFileWaiters(t, f, 1)
	awaitFileWaiters(t, g, 1)

	code, r, _ := attachFilesJSON(t, "--stuck-after=200ms", strconv.Itoa(h.pid()))
	if code != ExitDeadlock {
		t.Errorf("exit %d; want %d", code, ExitDeadlock)
	}
	posix, ofd := f+" [0-9]", g+" [0-EOF]"
	got := map[string]string{}
	for _, wr := range r.Waiters {
		got[wr.LockKind+" "+wr.Lock] = strconv.Itoa(wr.PID)
	}
	want := map[string]string{"posix " + posix: strconv.Itoa(wp.pid()), "ofd " + ofd: strconv.Itoa(wo.pid())}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waiters %v; want %v", got, want)
	}
	if fact := factOf(r, ofd, "waiter "+strconv.Itoa(wo.pid())); !strings.HasPrefix(fact, "inferred: ") {
		t.Errorf("OFD waiter fact %q; want it labelled inferred", fact)
	}
	stuck := map[string]int{}
	for _, fd := range r.Findings {
		if fd.Kind == report.StuckHolder {
			stuck[fd.LockKind+" "+fd.Lock] = fd.Holder.PID
		}
	}
	if stuck["posix "+posix] != h.pid() || stuck["ofd "+ofd] != h.pid() {
		t.Errorf("stuck holders %v; want pid %d on both locks", stuck, h.pid())
	}
	for _, l := range r.Locks {
		if l.Name == ofd && (l.Holder == nil || !l.Holder.Read) {
			t.Errorf("OFD lock %+v; want a read holder", l)
		}
	}
}

// A process in a lockwatch run is not a file-lock target: attach keeps
// reporting on its run.
func TestAttachFileLocksLeavesRuns(t *testing.T) {
	a := &app{}
	if ok, err := a.attachFileLocks(t.Context(), "not-a-pid"); ok || err != nil {
		t.Errorf("attachFileLocks(not-a-pid) = %v, %v; want it left to the run's report", ok, err)
	}
	if ok, err := a.attachFileLocks(t.Context(), strconv.Itoa(os.Getpid())); ok || err != nil {
		t.Errorf("attachFileLocks(a pid with no file lock) = %v, %v; want it left to the run's report", ok, err)
	}
}

// run --on-deadlock=kill acts only on what a run's registry proves: it
// never reads file locks, whose parties it could not prove (see
// docs/file-locks.md).
func TestRunReadsNoFileLocks(t *testing.T) {
	a := &app{}
	for _, probes := range []bool{true, false} {
		for _, s := range a.sources(runDir(t), probes).Locks {
			if _, ok := s.(*filelocksrc.Source); ok {
				t.Errorf("sources(withProbes=%v) reads file locks", probes)
			}
		}
	}
}

// A report on a waiter leaves out the locks of the other processes that
// nobody waits for (they take part in no finding), and says how many; a
// report on their holder lists them.
func TestAttachLeavesUnwaitedLocks(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	h, w := newLocker(t), newLocker(t)
	h.do("open a " + a)
	h.do("open b " + b)
	h.do("open c " + c)
	h.do("flock a ex")
	h.do("flock b ex")
	h.do("posix c w 0 1")
	w.do("open a " + a)
	w.ask("flock a ex")
	awaitFileWaiters(t, a, 1)

	_, r, _ := attachFilesJSON(t, "--stuck-after=1ms", strconv.Itoa(w.pid()))
	var names []string
	for _, l := range r.Locks {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{a}) {
		t.Errorf("locks %q; want only %q, the one pid %d waits for", names, a, w.pid())
	}
	want := fmt.Sprintf("2 file locks of the other processes here are not shown: nobody waits for them, so they take part in no finding (2 of pid %d;", h.pid())
	if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.HasPrefix(n, want) }) {
		t.Errorf("notes %q; want one starting %q", r.Notes, want)
	}

	_, r, _ = attachFilesJSON(t, "--stuck-after=1ms", strconv.Itoa(h.pid()))
	names = names[:0]
	for _, l := range r.Locks {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	if want := []string{a, b, c + " [0-0]"}; !slices.Equal(names, want) {
		t.Errorf("attach of the holder: locks %q; want %q", names, want)
	}
}

// Two processes share a flock (LOCK_SH) and a third, h, waits to take it
// alone, while it holds a flock that w waits for: the kernel lists h's
// request under one of the two shared locks only, and a report on w names
// both holders of the lock h waits for.
func TestAttachFlockReaders(t *testing.T) {
	dir := t.TempDir()
	x, y := filepath.Join(dir, "x.lock"), filepath.Join(dir, "y.lock")
	p, q, h, w := newLocker(t), newLocker(t), newLocker(t), newLocker(t)
	for _, l := range []*locker{p, q, h} {
		l.do("open x " + x)
	}
	h.do("open y " + y)
	w.do("open y " + y)
	p.do("flock x sh")
	q.do("flock x sh")
	h.do("flock y ex")
	h.ask("flock x ex")
	w.ask("flock y ex")
	awaitFileWaiters(t, x, 1)
	awaitFileWaiters(t, y, 1)

	_, r, _ := attachFilesJSON(t, "--stuck-after=1ms", strconv.Itoa(w.pid()))
	for _, l := range r.Locks {
		if l.Name != x {
			continue
		}
		if got, want := pidsOf(l.Holders), pidsOf2(p, q); !slices.Equal(got, want) {
			t.Errorf("holders of %s: %v; want both readers %v", x, got, want)
		}
		return
	}
	t.Errorf("locks %+v; want %s among them, which pid %d waits for", r.Locks, x, h.pid())
}
