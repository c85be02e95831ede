package probe

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/stackdump"
)

// runDir returns a fresh run directory path (not yet created).
func runDir(t *testing.T) string { return filepath.Join(t.TempDir(), "run") }

// startAgent starts an agent in a fresh run directory and closes it at the
// end of the test.
func startAgent(t *testing.T, o Options) *Agent {
	t.Helper()
	if o.Dir == "" {
		o.Dir = runDir(t)
	}
	a, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return a
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestStartClose(t *testing.T) {
	dir := runDir(t)
	a, err := Start(Options{Dir: dir, Role: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if got := Running(); got != a {
		t.Fatalf("Running() = %p; want the started agent %p", got, a)
	}
	again, err := Start(Options{Dir: t.TempDir(), Role: "second"})
	if err != nil || again != a {
		t.Fatalf("second Start = %p, %v; want the running agent %p", again, err, a)
	}
	if got, want := a.SocketPath(), probewire.SocketPath(dir, proc.Self()); got != want {
		t.Errorf("SocketPath() = %q; want %q", got, want)
	}
	fi, err := os.Lstat(a.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v; want a socket, 0600", fi.Mode())
	}
	info, err := (&probeclient.Client{Path: a.SocketPath()}).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Role != "first" || info.Dir != dir || info.PID != os.Getpid() {
		t.Errorf("Info: role %q, dir %q, pid %d; want %q, %q, %d", info.Role, info.Dir, info.PID, "first", dir, os.Getpid())
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if Running() != nil {
		t.Error("Running() after Close is not nil")
	}
	if _, err := os.Lstat(a.SocketPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after Close: %v; want it removed", err)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Process(proc.Self()); !ok || p.State != arena.ProcExited {
		t.Errorf("process after Close: %+v, %v; want state %q", p, ok, arena.ProcExited)
	}

	b := startAgent(t, Options{Dir: dir})
	if b == a {
		t.Error("Start after Close returned the closed agent")
	}
}

func TestStartAdoptsRole(t *testing.T) {
	a := startAgent(t, Options{})
	if _, err := Start(Options{Role: "worker"}); err != nil {
		t.Fatal(err)
	}
	pi, err := arena.ReadProcessInfo(a.Dir(), proc.Self())
	if err != nil {
		t.Fatal(err)
	}
	info, err := (&probeclient.Client{Path: a.SocketPath()}).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pi.Role != "worker" || info.Role != "worker" {
		t.Errorf("role in the info file %q, in Info %q; want %q", pi.Role, info.Role, "worker")
	}
	if _, err := Start(Options{Role: "other"}); err != nil {
		t.Fatal(err)
	}
	if pi, _ := arena.ReadProcessInfo(a.Dir(), proc.Self()); pi == nil || pi.Role != "worker" {
		t.Errorf("a second role replaced the first: %+v", pi)
	}
}

// Start returns an agent or an error, never both: a running agent that
// cannot record the role asked for is not returned, and keeps running
// without a role.
func TestStartRoleFails(t *testing.T) {
	a := startAgent(t, Options{})
	path, _, _ := arena.ProcessFiles(a.Dir(), proc.Self())
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	got, err := Start(Options{Role: "worker"})
	if err == nil || got != nil {
		t.Fatalf("Start with an unrecordable role: got agent %p, error %v; want no agent and an error", got, err)
	}
	if Running() != a {
		t.Errorf("Running() = %p; want the agent %p still running", Running(), a)
	}
	info, err := (&probeclient.Client{Path: a.SocketPath()}).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Role != "" {
		t.Errorf("role after the failure %q; want none", info.Role)
	}
}

func TestStartDefaultDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv(EnvRole, "envrole")
	a, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(a.Dir())
	defer a.Close()
	root, err := arena.DefaultRoot()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(a.Dir()) != root.Dir || !strings.HasPrefix(filepath.Base(a.Dir()), "run-") {
		t.Errorf("Dir() = %q; want a run directory under %q", a.Dir(), root.Dir)
	}
	pi, err := arena.ReadProcessInfo(a.Dir(), proc.Self())
	if err != nil {
		t.Fatal(err)
	}
	if pi.Role != "envrole" {
		t.Errorf("role %q; want %q from $%s", pi.Role, "envrole", EnvRole)
	}
}

func TestStartSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	_, err := Start(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Fatalf("Start in a long directory: %v; want an error about the socket path", err)
	}
	if Running() != nil {
		t.Fatal("an agent runs after a failed Start")
	}
}

// TestChild probes a real child process: the probe started by itself from
// LOCKWATCH_DIR in the child's init.
func TestChild(t *testing.T) {
	dir := runDir(t)
	c := startChild(t, "serve", EnvDir+"="+dir, EnvRole+"=tester")
	c.expect(c.stdout, "ready")
	st, err := proc.ReadStat(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	cl := &probeclient.Client{Path: probewire.SocketPath(dir, st.Identity())}
	ctx := context.Background()

	info, err := cl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Identity() != st.Identity() || info.Role != "tester" || info.Dir != dir || info.Goroutines < 2 {
		t.Errorf("Info = %+v; want %v, role tester, dir %s, 2 goroutines or more", info, st.Identity(), dir)
	}

	// The waiting goroutine registers a little after "ready".
	var lv *probeclient.LockView
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(quiescent) {
		if lv, err = cl.Locks(ctx); err != nil {
			t.Fatal(err)
		}
		if len(lv.Waiting) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(lv.Held) != 1 || lv.Held[0].Lock != "test.lock" || lv.Held[0].Goroutine == 0 || len(lv.Held[0].Stack) == 0 {
		t.Errorf("Held = %+v; want test.lock with its goroutine and stack", lv.Held)
	}
	if len(lv.Waiting) != 1 || lv.Waiting[0].Lock != "test.lock" || lv.Waiting[0].HolderPID != c.pid() {
		t.Errorf("Waiting = %+v; want one goroutine waiting for test.lock held by pid %d", lv.Waiting, c.pid())
	}

	d, err := cl.Goroutines(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := stackdump.ParseProfile(d.Data)
	if err != nil || d.Format != probewire.FormatProto || d.Size != len(d.Data) {
		t.Fatalf("default dump: format %q, %d bytes, parse error %v; want a proto that parses", d.Format, len(d.Data), err)
	}
	labelled := false
	for _, s := range prof.Samples {
		labelled = labelled || s.Labels["lockwatch.wait"] == "test.lock"
	}
	if !labelled {
		t.Errorf("no goroutine of the profile has the label lockwatch.wait=test.lock: %+v", prof.Samples)
	}

	d, err = cl.Goroutines(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := stackdump.Parse(bytes.NewReader(d.Data))
	if err != nil || d.Format != probewire.FormatText {
		t.Fatalf("text dump: format %q, parse error %v", d.Format, err)
	}
	if g := snap.Calling("github.com/lockwatch/lockwatch/lockreg.(*Mutex).Lock"); len(g) != 1 {
		t.Errorf("text dump: %d goroutines in lockreg.(*Mutex).Lock; want 1", len(g))
	}

	// The execution trace names the waiter by the id its record gives,
	// with the text dump's stack.
	waiter := lv.Waiting[0].Goroutine
	d, err = cl.GoroutineTrace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != probewire.FormatTrace || d.Size != len(d.Data) {
		t.Fatalf("trace: format %q, %d of %d bytes; want a trace", d.Format, len(d.Data), d.Size)
	}
	tr, err := stackdump.ParseTrace(bytes.NewReader(d.Data), func(id int64) bool { return id == waiter })
	if err != nil {
		t.Fatal(err)
	}
	// The waiter moves inside Lock between the two captures (under the race
	// detector it polls the holder's liveness): the frames from Lock out to
	// the goroutine's start are the ones both must show alike.
	textWaiter, _ := snap.Goroutine(waiter)
	const lock = "github.com/lockwatch/lockwatch/lockreg.(*Mutex).Lock"
	if len(tr.Goroutines) != 1 || !slices.EqualFunc(fromCall(tr.Goroutines[0].Frames, lock), fromCall(textWaiter.Frames, lock),
		func(a, b stackdump.Frame) bool { return a.Func == b.Func && a.File == b.File && a.Line == b.Line }) ||
		len(fromCall(textWaiter.Frames, lock)) == 0 {
		t.Errorf("trace: goroutines %+v; want goroutine %d waiting in lockreg.(*Mutex).Lock, as in the text dump: %+v", tr.Goroutines, waiter, textWaiter)
	}
}

// fromCall returns frames from the first one in a function named fn (or
// with that prefix) to the end: a stack's caller side, which stays put
// while the goroutine moves inside fn.
func fromCall(frames []stackdump.Frame, fn string) []stackdump.Frame {
	for i, f := range frames {
		if strings.HasPrefix(f.Func, fn) {
			return frames[i:]
		}
	}
	return nil
}
