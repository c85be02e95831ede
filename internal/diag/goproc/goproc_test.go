package goproc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/stackdump"
)

const probablyStillBlocked = testbound.ProbablyStillBlocked

// builds are the target, built once per test binary.
var builds struct {
	once sync.Once
	dir  string
	err  map[string]error
}

// build returns the target built in one of the ways a user's program is:
// "default", "stripped" (-s -w), "pie", "go1.27" (the next release's
// toolchain, fetched through the module proxy as the go command does).
func build(t testing.TB, kind string) string {
	t.Helper()
	builds.once.Do(func() {
		builds.dir, _ = os.MkdirTemp("", "goproc-test")
		builds.err = map[string]error{}
	})
	exe := filepath.Join(builds.dir, "target."+kind)
	if err, done := builds.err[kind]; done {
		if err != nil {
			t.Fatal(err)
		}
		return exe
	}
	args := []string{"build", "-o", exe}
	env := []string{"CGO_ENABLED=0"}
	switch kind {
	case "stripped":
		args = append(args, "-ldflags=-s -w")
	case "pie":
		args = append(args, "-buildmode=pie")
	case "go1.27":
		env = append(env, "GOTOOLCHAIN=go1.27.3")
	case "go1.27-stripped":
		env = append(env, "GOTOOLCHAIN=go1.27.3")
		args = append(args, "-ldflags=-s -w")
	}
	pkg := "./testdata/target"
	if name, ok := strings.CutPrefix(kind, "ownerrace"); ok {
		pkg = "./testdata/ownerrace" // the drop-in sync's owner word (owner_test.go)
		switch name {
		case "-external":
			// Linked by gcc (cgo's external linking), as a program that
			// links C libraries is.
			env = []string{"CGO_ENABLED=1"}
			args = append(args, "-ldflags=-linkmode=external")
		case "-external-stripped":
			env = []string{"CGO_ENABLED=1"}
			args = append(args, "-ldflags=-linkmode=external -s -w")
		}
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("building the %s target: %v\n%s", kind, err, out)
	}
	builds.err[kind] = err
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestMain(m *testing.M) {
	if pid := os.Getenv("GOPROC_TEST_ATTACH"); pid != "" {
		// A reader run as another user (TestPermission): says why it
		// cannot read.
		n, _ := strconv.Atoi(pid)
		if _, err := goproc.Attach(n, goproc.Options{}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("read")
		os.Exit(0)
	}
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// target is a running target program.
type target struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	// said are the lines it printed before "ready" (-chans).
	said []string
}

// start runs the target and waits for it to say it is ready.
func start(t testing.TB, exe string, args ...string) *target {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = tg.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tg.done
	})
	ready := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		var said []string
		for {
			line, err := br.ReadString('\n')
			if line == "ready\n" || err != nil {
				tg.said = said // before ready is sent
				ready <- line
				break
			}
			said = append(said, strings.TrimSpace(line))
		}
		io.Copy(io.Discard, br)
		cmd.Wait()
		close(tg.done)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("target said %q; want ready\n%s", line, tg.stderr)
		}
	case <-time.After(probablyStillBlocked):
		t.Fatalf("target did not say ready in %v", probablyStillBlocked)
	}
	return tg
}

// settled reads the target, which said ready once every goroutine it set
// up was parked where it should be (its own traceback showed so), and
// checks that they are: 3 waiters on muHeld, the AB/BA pair, a writer and
// two readers on rw.
func settled(t testing.TB, p *goproc.Process) *goproc.Image {
	t.Helper()
	img, err := p.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiters := 0
	for _, l := range img.Locks {
		if strings.HasPrefix(l.Kind, "sync.") {
			waiters += len(l.Waiters)
		}
	}
	if waiters != 8 {
		t.Fatalf("%d goroutines wait for locks; want 8: %+v", waiters, img.Locks)
	}
	return img
}

// TestAgainstTraceback reads the target, then makes it print its own
// traceback (SIGQUIT), and checks the two agree goroutine by goroutine:
// ids, states, every frame the runtime prints (inlined calls included),
// creators.
func TestAgainstTraceback(t *testing.T) {
	for _, kind := range []string{"default", "stripped", "pie", "go1.27", "go1.27-stripped"} {
		t.Run(kind, func(t *testing.T) {
			tg := start(t, build(t, kind))
			p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			img := settled(t, p)
			if want := strings.HasSuffix(kind, "stripped"); p.Binary.Stripped != want || (p.Binary.LayoutSource == "DWARF") == want {
				t.Errorf("stripped %v, layout from %s; want stripped %v", p.Binary.Stripped, p.Binary.LayoutSource, want)
			}
			tg.cmd.Process.Signal(syscall.SIGQUIT)
			<-tg.done
			dump, err := stackdump.Parse(bytes.NewReader(tg.stderr.Bytes()))
			if err != nil {
				t.Fatalf("parsing the target's traceback: %v\n%s", err, tg.stderr)
			}
			compare(t, img, dump)
			checkLocks(t, img)
		})
	}
}

func compare(t *testing.T, img *goproc.Image, dump *stackdump.Snapshot) {
	t.Helper()
	mine := map[int64]goproc.Goroutine{}
	for _, g := range img.Goroutines {
		mine[g.ID] = g
	}
	n := 0
	for _, want := range dump.Goroutines {
		if want.ID == 0 || want.State == "running" || want.StackUnavailable {
			continue // the thread and goroutine that printed the dump
		}
		if slices.ContainsFunc(want.Frames, func(f stackdump.Frame) bool { return f.Func == "main.announce" }) {
			continue // it said ready, then parked: it may have been on its way when read
		}
		n++
		g, ok := mine[want.ID]
		if !ok {
			t.Errorf("goroutine %d [%s] of the traceback was not read", want.ID, want.State)
			continue
		}
		if state := cmpState(g); state != want.State {
			t.Errorf("goroutine %d: state %q; the traceback says %q", g.ID, state, want.State)
		}
		var got []string
		// A SIGQUIT traceback shows the runtime's frames too.
		for _, f := range g.Frames {
			got = append(got, fmt.Sprintf("%s %s:%d", f.Func, f.File, f.Line))
		}
		var wantFrames []string
		for _, f := range want.Frames {
			wantFrames = append(wantFrames, fmt.Sprintf("%s %s:%d", f.Func, f.File, f.Line))
		}
		if !slices.Equal(got, wantFrames) {
			t.Errorf("goroutine %d frames:\n%s\nthe traceback's:\n%s", g.ID, strings.Join(got, "\n"), strings.Join(wantFrames, "\n"))
		}
		switch {
		case (g.CreatedBy == nil) != (want.CreatedBy == nil):
			t.Errorf("goroutine %d: created by %v; the traceback says %v", g.ID, g.CreatedBy, want.CreatedBy)
		case g.CreatedBy != nil && (g.CreatedBy.Func != want.CreatedBy.Func || g.CreatedBy.Line != want.CreatedBy.Line || g.Creator != want.CreatorID):
			t.Errorf("goroutine %d: created by %s:%d in %d; the traceback says %s:%d in %d", g.ID,
				g.CreatedBy.Func, g.CreatedBy.Line, g.Creator, want.CreatedBy.Func, want.CreatedBy.Line, want.CreatorID)
		}
	}
	if n < 11 {
		t.Errorf("the traceback has %d goroutines; want the target's 11 at least", n)
	}
}

// parkedIDs are the ids of an image's parked goroutines, the runtime's
// and the one that said ready (it may have been on its way to park when
// the live read saw it) left out.
func parkedIDs(img *goproc.Image) []int64 {
	var out []int64
	for _, g := range img.Goroutines {
		if g.Status == goproc.StateWaiting && !g.System && !g.Calls("main.announce") {
			out = append(out, g.ID)
		}
	}
	return out
}

func cmpState(g goproc.Goroutine) string {
	if g.WaitReason != "" {
		return g.WaitReason
	}
	return g.Status
}

// checkLocks checks the waits and the inferred holders against what the
// target set up.
func checkLocks(t *testing.T, img *goproc.Image) {
	t.Helper()
	by := map[int64]goproc.Goroutine{}
	for _, g := range img.Goroutines {
		by[g.ID] = g
	}
	in := func(id int64, fn string) bool { g := by[id]; return g.Calls(fn) }
	var mutexes, rw int
	for _, l := range img.Locks {
		switch l.Kind {
		case "sync.Mutex":
			mutexes++
			if len(l.Holders) != 1 {
				t.Errorf("%s %#x (%s): holders %+v; want one inferred", l.Kind, l.Addr, l.State, l.Holders)
				continue
			}
			h := l.Holders[0]
			if !strings.HasPrefix(h.Evidence, "a pending deferred Unlock") {
				t.Errorf("holder evidence %q", h.Evidence)
			}
			switch len(l.Waiters) {
			case 3: // muHeld
				if !in(h.Goroutine, "main.holdAndBlock") || !l.Locked {
					t.Errorf("muHeld: holder g%d, locked %v; want holdAndBlock's goroutine, locked", h.Goroutine, l.Locked)
				}
				for _, w := range l.Waiters {
					if !in(w.Goroutine, "main.waitHeld") {
						t.Errorf("muHeld waiter g%d is not in waitHeld", w.Goroutine)
					}
				}
			case 1: // pair.a or pair.b: the holder waits for the other
				if !in(h.Goroutine, "main.lockAB") || !in(l.Waiters[0].Goroutine, "main.lockAB") || h.Goroutine == l.Waiters[0].Goroutine {
					t.Errorf("pair lock: holder g%d, waiter g%d", h.Goroutine, l.Waiters[0].Goroutine)
				}
				if w := by[h.Goroutine].Waits; w == nil || w.Kind != "sync.Mutex" || w.Addr == l.Addr {
					t.Errorf("pair lock holder g%d waits for %+v; want the other mutex", h.Goroutine, w)
				}
			default:
				t.Errorf("%s %#x: %d waiters", l.Kind, l.Addr, len(l.Waiters))
			}
		case "sync.RWMutex":
			rw++
			var readers, writers int
			for _, w := range l.Waiters {
				if w.Read {
					readers++
				} else {
					writers++
				}
			}
			if readers != 2 || writers != 1 || l.ReadersHolding != 1 || l.WriterHolds {
				t.Errorf("rw: %d readers and %d writers wait, %d readers hold, writer holds %v (%s); want 2, 1, 1, false", readers, writers, l.ReadersHolding, l.WriterHolds, l.State)
			}
			if len(l.Holders) != 1 || !l.Holders[0].Read || !in(l.Holders[0].Goroutine, "main.readAndBlock") {
				t.Errorf("rw holders %+v; want readAndBlock's goroutine, reading", l.Holders)
			}
		}
	}
	if mutexes != 3 || rw != 1 {
		t.Errorf("%d mutexes and %d RWMutexes waited for; want 3 and 1", mutexes, rw)
	}
}

// TestNotGo: a process that is not Go is one clear error.
func TestNotGo(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	_, err := goproc.Attach(cmd.Process.Pid, goproc.Options{})
	if !errors.Is(err, goproc.ErrNotGo) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v; want one line wrapping ErrNotGo", err)
	}
}

// TestExited: a target that exits after Attach gives ErrExited, never a
// report.
func TestExited(t *testing.T) {
	tg := start(t, build(t, "default"))
	p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tg.cmd.Process.Kill()
	<-tg.done
	if _, err := p.Read(context.Background()); !errors.Is(err, goproc.ErrExited) {
		t.Fatalf("got %v; want ErrExited", err)
	}
}

// TestCore reads a core file written by gcore of the running target (default
// and stripped builds) and finds what the live read finds.
func TestCore(t *testing.T) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Skip("gcore (gdb) is not installed")
	}
	for _, kind := range []string{"default", "stripped"} {
		t.Run(kind, func(t *testing.T) {
			exe := build(t, kind)
			tg := start(t, exe)
			p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			live := settled(t, p)
			prefix := filepath.Join(t.TempDir(), "core")
			if out, err := exec.Command(gcore, "-o", prefix, fmt.Sprint(tg.cmd.Process.Pid)).CombinedOutput(); err != nil {
				t.Fatalf("gcore: %v\n%s", err, out)
			}
			core := fmt.Sprintf("%s.%d", prefix, tg.cmd.Process.Pid)
			tg.cmd.Process.Kill()
			<-tg.done
			if !goproc.IsCore(core) {
				t.Fatalf("%s is not a core", core)
			}
			c, err := goproc.OpenCore(core, goproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			img, err := c.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.PID != tg.cmd.Process.Pid {
				t.Errorf("core of pid %d; want %d", c.PID, tg.cmd.Process.Pid)
			}
			checkLocks(t, img)
			// The same goroutines parked.
			if got, want := parkedIDs(img), parkedIDs(live); !slices.Equal(got, want) {
				t.Errorf("parked goroutines in the core %v; live %v", got, want)
			}
			// Another binary than the one that ran is refused.
			other := build(t, "default")
			if kind == "default" {
				other = build(t, "stripped")
			}
			if _, err := goproc.OpenCore(core, goproc.Options{Exe: other}); err == nil || !strings.Contains(err.Error(), "not the one that ran") {
				t.Errorf("with another binary: %v; want it refused", err)
			}
		})
	}
}

// TestLayoutTable: the table of layouts (layouts_table.go, for stripped
// binaries) says what each release's DWARF says; regenerate it with
// 'go run ./genlayout go1.26.8 go1.27.3 > layouts_table.go'.
func TestLayoutTable(t *testing.T) {
	for _, tt := range []struct{ withDWARF, stripped string }{{"default", "stripped"}, {"go1.27", "go1.27-stripped"}} {
		t.Run(tt.withDWARF, func(t *testing.T) {
			version, L, err := goproc.LayoutOf(build(t, tt.withDWARF))
			if err != nil {
				t.Fatal(err)
			}
			b, err := goproc.OpenBinary(build(t, tt.stripped))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if got := b.Layout(); fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", L) {
				t.Errorf("%s: the table's layout\n%#v\nthe DWARF's\n%#v", version, got, L)
			}
		})
	}
	if got := goproc.KnownReleases(); !slices.Equal(got, []string{"go1.26", "go1.27"}) {
		t.Errorf("known releases %v", got)
	}
}

// TestUnknownRelease: a stripped binary of a release the table does not
// know is one clear error, naming the releases it knows.
func TestUnknownRelease(t *testing.T) {
	exe := build(t, "stripped")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// The build information's version string, as a release not in the
	// table ("go1.26.8" -> "go1.99.8").
	i := bytes.Index(b, []byte("\x08go1.26."))
	if i < 0 {
		t.Fatal("no go1.26 version string in the binary")
	}
	copy(b[i+1:], "go1.99.")
	other := filepath.Join(t.TempDir(), "future")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = goproc.OpenBinary(other)
	if !errors.Is(err, goproc.ErrRelease) || !strings.Contains(err.Error(), "go1.26, go1.27") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v; want one line wrapping ErrRelease that names the known releases", err)
	}
}

// TestPermission: a process the kernel does not let lockwatch read is one
// line saying why and what to do: another user's, a non-dumpable one.
func TestPermission(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs processes as another user: needs root")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "goproc-perm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	copyExe := func(from, name string) string {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, name)
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return to
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	reader := copyExe(self, "reader")
	targetExe := copyExe(build(t, "default"), "target")
	as := func(cmd *exec.Cmd, uid uint32) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		return cmd
	}
	tests := []struct {
		name      string
		targetUID uint32
		args      []string
		want      string
	}{
		{"another user's", 0, nil, "belongs to uid 0"},
		{"non-dumpable", nobody, []string{"-nondumpable"}, "not dumpable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := as(exec.Command(targetExe, tt.args...), tt.targetUID)
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
				t.Fatalf("target said %q, %v", line, err)
			}
			r := as(exec.Command(reader, "-test.run=^$"), nobody)
			r.Env = append(os.Environ(), "GOPROC_TEST_ATTACH="+strconv.Itoa(cmd.Process.Pid))
			out, _ := r.Output()
			msg := strings.TrimSpace(string(out))
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, "permission denied") || strings.Contains(msg, "\n") {
				t.Errorf("got %q; want one line saying %q", msg, tt.want)
			}
		})
	}
}

// TestDeletedBinary: a process whose binary was deleted, or replaced by
// another file, on disk is read with the binary it runs (/proc/PID/exe).
func TestDeletedBinary(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "target")
	b, err := os.ReadFile(build(t, "default"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	tg := start(t, exe)
	os.Remove(exe)
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	checkLocks(t, settled(t, p))
}

// TestReadAgain: a second Read of a target whose goroutines stay parked
// keeps them with one copy each (confirmed against the first Read's, so
// it copies about half the bytes), and finds what the first found:
// the same goroutines, states, frames, channels, waits and locks; the
// goroutine that keeps waking (a 1 ms heartbeat) is read as it is now.
func TestReadAgain(t *testing.T) {
	tg := start(t, build(t, "default"), "-chans", "-n", "200", "-heartbeat", "1ms")
	p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first := settled(t, p)
	before := p.Stats()
	second := settled(t, p)
	after := p.Stats()
	if b1, b2 := before.Bytes, after.Bytes-before.Bytes; b2 > b1*6/10 {
		t.Errorf("the second Read copied %d bytes, the first %d; want at most 60%%: one copy of what did not change", b2, b1)
	}
	type view struct {
		State, Frames, Chans, Waits string
	}
	parked := func(img *goproc.Image) map[int64]view {
		out := map[int64]view{}
		for _, g := range img.Goroutines {
			if g.Status != goproc.StateWaiting || g.WaitReason == "sleep" && g.Calls("main.heartbeat.func1") {
				continue
			}
			var fs []string
			for _, f := range g.Frames {
				fs = append(fs, fmt.Sprintf("%s:%d", f.Func, f.Line))
			}
			v := view{State: g.WaitReason, Frames: strings.Join(fs, " "), Chans: fmt.Sprint(g.Chans)}
			if g.Waits != nil {
				v.Waits = fmt.Sprintf("%+v", *g.Waits)
			}
			out[g.ID] = v
		}
		return out
	}
	a, b := parked(first), parked(second)
	if len(a) < 200 {
		t.Fatalf("%d parked goroutines in the first read; want the target's 200 idle ones at least", len(a))
	}
	for id, va := range a {
		if vb, ok := b[id]; !ok || va != vb {
			t.Errorf("goroutine %d: first read %+v; second %+v", id, va, vb)
		}
	}
	lockView := func(img *goproc.Image) string {
		var s []string
		for _, l := range img.Locks {
			s = append(s, fmt.Sprintf("%#x %s %s %+v %+v", l.Addr, l.Kind, l.State, l.Waiters, l.Holders))
		}
		return strings.Join(s, "\n")
	}
	if la, lb := lockView(first), lockView(second); la != lb {
		t.Errorf("locks of the first read:\n%s\nof the second:\n%s", la, lb)
	}
	checkLocks(t, second)
}
