package goprocsrc

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

// TestSnapshot converts an image: named and unnamed locks, an inferred
// holder with its evidence, a locked mutex whose holder no evidence names
// (a holder with no goroutine: never part of a cycle), waits with and
// without a known start, and the other waits as a note.
func TestSnapshot(t *testing.T) {
	taken := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	frames := []goproc.Frame{{Func: "runtime.gopark"}, {Func: "sync.(*Mutex).Lock"}, {Func: "main.f", File: "f.go", Line: 7}}
	img := &goproc.Image{PID: 42, Taken: taken, Goroutines: []goproc.Goroutine{
		{ID: 1, Status: "waiting", WaitReason: "sync.Mutex.Lock", WaitKnown: true, WaitingAtLeast: time.Minute, Frames: frames},
		{ID: 2, Status: "waiting", WaitReason: "sync.Mutex.Lock", Frames: frames},
		{ID: 3, Status: "waiting", WaitReason: "chan receive", WaitKnown: true, WaitingAtLeast: 2 * time.Minute, Chans: []uint64{0xc000030000},
			Frames: []goproc.Frame{{Func: "runtime.gopark"}, {Func: "main.hold", File: "h.go", Line: 9}}},
		{ID: 4, Status: "waiting", WaitReason: "chan receive", System: true},
	}, Locks: []goproc.Lock{
		{Addr: 0x1000, Kind: "sync.Mutex", Name: "main.mu", Locked: true, State: "locked, 1 waiting",
			Waiters: []goproc.Waiter{{Goroutine: 1}}, Holders: []goproc.Holder{{Goroutine: 3, Evidence: "a pending deferred Unlock"}}},
		{Addr: 0xc000010000, Kind: "sync.Mutex", Locked: true, Waiters: []goproc.Waiter{{Goroutine: 2}}},
		{Addr: 0xc000020000, Kind: "sync.WaitGroup", Waiters: []goproc.Waiter{{Goroutine: 9}}},
	}}
	id := procid.ID{PID: 42, Start: 7}
	snap := Snapshot(id, &goproc.Binary{LayoutSource: "DWARF"}, img, "42")
	if len(snap.Locks) != 2 {
		t.Fatalf("got %d locks; want the 2 mutexes", len(snap.Locks))
	}
	named, anon := snap.Locks[0], snap.Locks[1]
	if named.Name != "main.mu" || anon.Name != "0xc000010000" || named.Kind != KindMutex {
		t.Errorf("names %q, %q, kind %q", named.Name, anon.Name, named.Kind)
	}
	if h := named.Holders; len(h) != 1 || h[0].Goroutine != 3 || h[0].ID != id ||
		h[0].Inferred != "a pending deferred Unlock; it waits (chan receive on 0xc000030000) in main.hold at h.go:9" ||
		!h[0].Since.Equal(taken.Add(-2*time.Minute)) {
		t.Errorf("holders %+v; want g3, inferred, blocked for at least 2 minutes", h)
	}
	if h := anon.Holders; len(h) != 1 || h[0].Goroutine != 0 || h[0].Inferred != "" {
		t.Errorf("holders %+v; want one with no goroutine, not inferred", h)
	}
	if w := named.Waiters[0]; !w.Since.Equal(taken.Add(-time.Minute)) || w.Stack != 1 {
		t.Errorf("waiter %+v; want since a minute before, stack 1", w)
	}
	if w := anon.Waiters[0]; !w.Since.IsZero() {
		t.Errorf("waiter %+v; want no start (no GC noted it)", w)
	}
	frames2, ok := snap.Stacks.Stack(id, 1)
	if !ok || len(frames2) != 2 || frames2[1].Func != "main.f" {
		t.Errorf("stack 1: %v; want the runtime's frames left out", frames2)
	}
	if _, ok := snap.Stacks.Stack(procid.ID{PID: 43}, 1); ok {
		t.Errorf("another process's stack resolved")
	}
	notes := strings.Join(snap.Notes, "\n")
	for _, want := range []string{"inferred", "lower bounds", "1 on a chan", "1 on a sync.WaitGroup", "'lockwatch stacks 42'"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes do not say %q:\n%s", want, notes)
		}
	}
	var facts []lockstate.Fact = named.Facts.Extra
	if len(facts) != 2 || facts[1].Value != "locked, 1 waiting" {
		t.Errorf("facts %+v", facts)
	}
}

// TestChanStates: a goroutine blocked on channels says which in the
// states of the live stacks a report asks for (its stack row), at most
// four of a select's; 'lockwatch stacks' keeps the runtime's states, so
// that goroutines with one stack group together.
func TestChanStates(t *testing.T) {
	img := &goproc.Image{PID: 42, Goroutines: []goproc.Goroutine{
		{ID: 1, Status: "waiting", WaitReason: "chan send", Chans: []uint64{0xc000010000}},
		{ID: 2, Status: "waiting", WaitReason: "select", Chans: []uint64{1 << 12, 2 << 12, 3 << 12, 4 << 12, 5 << 12, 6 << 12}},
		{ID: 3, Status: "waiting", WaitReason: "chan receive"}, // its channel not read
		{ID: 4, Status: "runnable"},
	}}
	id := procid.ID{PID: 42, Start: 7}
	src := &Source{id: id, last: img}
	got, err := src.Stacks().Goroutines(context.Background(), id, []int64{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, g := range got.Goroutines {
		states = append(states, g.State)
	}
	want := []string{"chan send on 0xc000010000", "select on 0x1000, 0x2000, 0x3000, 0x4000 and 2 more", "chan receive", "runnable"}
	if !slices.Equal(states, want) {
		t.Errorf("live states %q; want %q", states, want)
	}
	states = states[:0]
	for _, g := range Goroutines(img).Goroutines {
		states = append(states, g.State)
	}
	if want := []string{"chan send", "select", "chan receive", "runnable"}; !slices.Equal(states, want) {
		t.Errorf("stacks' states %q; want %q", states, want)
	}
}

// TestChansLive attaches to the goroutine reader's target program, with
// goroutines blocked in a send, a receive and a select on channels whose
// addresses it prints, and muHeld's holder blocked receiving from the
// channel printed as never: the holder's evidence and the live states
// name those channels (default and stripped builds).
func TestChansLive(t *testing.T) {
	for _, kind := range []string{"default", "stripped"} {
		t.Run(kind, func(t *testing.T) {
			exe := filepath.Join(t.TempDir(), "target")
			args := []string{"build", "-o", exe}
			if kind == "stripped" {
				args = append(args, "-ldflags=-s -w")
			}
			cmd := exec.Command("go", append(args, "../../diag/goproc/testdata/target")...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			tg := exec.Command(exe, "-chans")
			stdout, err := tg.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := tg.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { tg.Process.Kill(); tg.Wait() }()
			printed := map[string]string{}
			br := bufio.NewReader(stdout)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("the target ended before ready: %v", err)
				}
				if line == "ready\n" {
					break
				}
				k, v, _ := strings.Cut(strings.TrimSpace(line), " 0x")
				printed[k] = "0x" + v
			}
			go io.Copy(io.Discard, br)
			src, err := Attach(tg.Process.Pid, goproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			id := src.ID()
			deadline := time.Now().Add(testbound.ProbablyStillBlocked)
			for {
				snap, err := src.Read(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var evidence []string
				for _, l := range snap.Locks {
					for _, h := range l.Holders {
						evidence = append(evidence, h.Inferred)
					}
				}
				byFunc := map[string]string{}
				for _, g := range src.last.Goroutines {
					for _, fn := range []string{"main.blockOnChans.func1", "main.blockOnChans.func2", "main.blockOnChans.func3"} {
						if g.Calls(fn) {
							live, err := src.Stacks().Goroutines(context.Background(), id, []int64{g.ID})
							if err != nil || len(live.Goroutines) != 1 {
								t.Fatalf("live stack of g%d: %v", g.ID, err)
							}
							byFunc[fn] = live.Goroutines[0].State
						}
					}
				}
				a, b, _ := strings.Cut(printed["select"], " ")
				na, _ := strconv.ParseUint(strings.TrimPrefix(a, "0x"), 16, 64)
				nb, _ := strconv.ParseUint(strings.TrimPrefix(b, "0x"), 16, 64)
				if na > nb { // by address
					a, b = b, a
				}
				wantHolder := "it waits (chan receive on " + printed["never"] + ") in main.holdAndBlock"
				got := slices.ContainsFunc(evidence, func(e string) bool { return strings.Contains(e, wantHolder) }) &&
					byFunc["main.blockOnChans.func1"] == "chan send on "+printed["chan send"] &&
					byFunc["main.blockOnChans.func2"] == "chan receive on "+printed["chan receive"] &&
					byFunc["main.blockOnChans.func3"] == "select on "+a+", "+b
				if got {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the target printed %q; holders' evidence %q; live states %q", printed, evidence, byFunc)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
