package probe

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/stackdump"
)

// dumpPaths reads the dump pair's paths from a stuck line.
var dumpPaths = regexp.MustCompile(`dump(?: \([^)]*\))?: (\S+) and (\S+)$`)

// checkDumpPair parses the text dump and the profile of a stuck line, and
// checks that both show a goroutine waiting for lock (unless lock is "").
func checkDumpPair(t *testing.T, line, lock string) {
	t.Helper()
	m := dumpPaths.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no dump pair in %q", line)
	}
	text, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	snap, err := stackdump.Parse(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("text dump %s: %v", m[1], err)
	}
	if lock != "" && len(snap.Calling("github.com/lockwatch/lockwatch/lockreg.(*Mutex).Lock")) == 0 {
		t.Errorf("text dump %s: no goroutine in lockreg.(*Mutex).Lock", m[1])
	}
	b, err := os.ReadFile(m[2])
	if err != nil {
		t.Fatal(err)
	}
	prof, err := stackdump.ParseProfile(b)
	if err != nil {
		t.Fatalf("profile %s: %v", m[2], err)
	}
	for _, s := range prof.Samples {
		if lock == "" || s.Labels["lockwatch.wait"] == lock {
			return
		}
	}
	t.Errorf("profile %s: no goroutine labelled lockwatch.wait=%s", m[2], lock)
}

// TestStuckDeadHolder: a child waits for a lock whose holder, another child,
// is SIGKILLed; the waiter's stuck hook says so, naming the dead pid, and
// its dumps parse.
func TestStuckDeadHolder(t *testing.T) {
	dir := runDir(t)
	holder := startChild(t, "hold", testDirEnv+"="+dir)
	holder.expect(holder.stdout, "held")
	waiter := startChild(t, "wait", testDirEnv+"="+dir)
	waiter.expect(waiter.stdout, "waiting")

	held := fmt.Sprintf(`lock "dead.lock", held by pid %d goroutine `, holder.pid())
	line := waiter.expect(waiter.stderr, fmt.Sprintf("pid %d goroutine", waiter.pid()), held, "which is alive")
	checkDumpPair(t, line, "dead.lock")

	holder.kill()
	line = waiter.expect(waiter.stderr, held, "which is dead")
	t.Logf("stuck line: %s", line)
	checkDumpPair(t, line, "dead.lock")
}

// TestStuckOncePerWait: the later calls of one wait (lockreg calls at 10 s,
// 30 s, 70 s...) write no line and no dump, unless the holder changed.
func TestStuckOncePerWait(t *testing.T) {
	var stderr syncBuffer
	a := startAgent(t, Options{Stderr: &stderr})
	ev := lockreg.StuckEvent{Lock: "once.lock", Dir: a.Dir(), Goroutine: 7, Waited: 10 * time.Second,
		Holder: lockreg.Holder{PID: os.Getpid(), Goroutine: 1}, HolderStatus: proc.Alive, Calls: 1}
	a.onStuck(ev)
	for i, w := range []time.Duration{30, 70, 150, 310} {
		ev.Calls, ev.Waited = i+2, w*time.Second
		a.onStuck(ev)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 1 {
		t.Errorf("got %d lines for one wait; want 1:\n%s", n, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(a.Dir(), "*.stuck-*"))
	if len(files) != 2 {
		t.Errorf("got dump files %q; want one pair", files)
	}
	// The holder died: that is news.
	ev.Calls, ev.HolderStatus = 6, proc.Gone
	a.onStuck(ev)
	if n := strings.Count(stderr.String(), "\n"); n != 2 || !strings.Contains(stderr.String(), "which is dead") {
		t.Errorf("got %d lines; want a second saying the holder is dead:\n%s", n, stderr.String())
	}
	// A new wait of the same goroutine is told again.
	ev.Calls = 1
	a.onStuck(ev)
	if n := strings.Count(stderr.String(), "\n"); n != 3 {
		t.Errorf("got %d lines; want a third for a new wait:\n%s", n, stderr.String())
	}
}

// TestStuckRateLimit: every stuck call writes its line, but a process
// writes one dump pair per stuckDumpEvery.
func TestStuckRateLimit(t *testing.T) {
	var stderr syncBuffer
	a := startAgent(t, Options{Stderr: &stderr})
	m, err := a.Registry().Mutex("rate.lock")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	defer m.Unlock()

	const calls = 6
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.onStuck(lockreg.StuckEvent{Lock: "rate.lock", Dir: a.Dir(), Goroutine: int64(100 + i), Waited: 10 * time.Second,
				Holder: lockreg.Holder{PID: os.Getpid(), Goroutine: 1}, HolderStatus: proc.Alive, Calls: 1})
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != calls {
		t.Fatalf("%d lines; want %d:\n%s", len(lines), calls, stderr.String())
	}
	for _, l := range lines {
		if !dumpPaths.MatchString(l) {
			t.Errorf("line without the dump's paths: %q", l)
		}
	}
	files, err := filepath.Glob(filepath.Join(a.Dir(), "*.stuck-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Errorf("dump files %q; want one pair", files)
	}
	checkDumpPair(t, lines[len(lines)-1], "")
}

func TestHolderText(t *testing.T) {
	tests := []struct {
		name string
		e    lockreg.StuckEvent
		want string
	}{
		{"alive", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42, Goroutine: 7}, HolderStatus: proc.Alive},
			"held by pid 42 goroutine 7, which is alive"},
		{"gone", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42, Goroutine: 7}, HolderStatus: proc.Gone, OwnerDied: true},
			"held by pid 42 goroutine 7, which is dead (no such process)"},
		{"zombie", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42, Goroutine: 7}, HolderStatus: proc.Zombie},
			"held by pid 42 goroutine 7, which is dead (a zombie, not yet reaped)"},
		{"reused", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42, Goroutine: 7}, HolderStatus: proc.Reused},
			"held by pid 42 goroutine 7, which is dead (its pid now belongs to another process)"},
		{"marked by the kernel", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42, Goroutine: 7}, HolderStatus: proc.Alive, OwnerDied: true},
			"held by pid 42 goroutine 7, which is dead (the lock is marked owner-died)"},
		{"no record", lockreg.StuckEvent{Holder: lockreg.Holder{PID: 42}, HolderStatus: proc.Unknown},
			"held by pid 42 (goroutine not recorded), which may be alive (unknown)"},
		{"changed hands", lockreg.StuckEvent{}, "held by no known process (it may just have changed hands)"},
		{"unknown dead holder", lockreg.StuckEvent{OwnerDied: true}, "whose holder died holding it (unknown pid)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := holderText(tt.e); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestSIGUSR1: the signal writes a profile into the run directory, and the
// program goes on.
func TestSIGUSR1(t *testing.T) {
	var stderr syncBuffer
	a := startAgent(t, Options{Stderr: &stderr, Signal: true})
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`SIGUSR1: pid \d+: goroutine profile in (\S+)\n`)
	var m []string
	for deadline := time.Now().Add(probablyStillBlocked); m == nil; time.Sleep(quiescent) {
		if m = re.FindStringSubmatch(stderr.String()); m == nil && time.Now().After(deadline) {
			t.Fatalf("no SIGUSR1 line within %v: %q", probablyStillBlocked, stderr.String())
		}
	}
	if filepath.Dir(m[1]) != a.Dir() {
		t.Errorf("profile %s is not in the run directory %s", m[1], a.Dir())
	}
	b, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stackdump.ParseProfile(b); err != nil {
		t.Errorf("profile %s: %v", m[1], err)
	}
}

// TestStuckDumpCap: the stuck hook writes no more than maxStuckDumps pairs,
// however long the wait.
func TestStuckDumpCap(t *testing.T) {
	base := filepath.Join(t.TempDir(), "p-1-1")
	var d dumper
	now := time.Now()
	for i := range maxStuckDumps + 2 {
		_, age, err := d.stuckPair(base, now.Add(time.Duration(i)*stuckDumpEvery))
		switch {
		case i < maxStuckDumps && (err != nil || age != 0):
			t.Fatalf("pair %d: age %v, %v; want a new pair", i, age, err)
		case i >= maxStuckDumps && !errors.Is(err, errEnoughDumps):
			t.Fatalf("pair %d: %v; want errEnoughDumps", i, err)
		}
	}
	files, err := filepath.Glob(base + ".stuck-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2*maxStuckDumps {
		t.Errorf("%d dump files; want %d", len(files), 2*maxStuckDumps)
	}
}
