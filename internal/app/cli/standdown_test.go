package cli

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
)

// goDeadlock is the runtime's own message for a program whose goroutines
// are all blocked.
const goDeadlock = "fatal error: all goroutines are asleep - deadlock!"

// asleepBin builds testdata/asleep once per test binary.
var asleepBin = programBin("asleep")

func buildAsleep(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin, err := asleepBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// bounded runs argv under timeout(1), which kills it after
// ProbablyStillBlocked*3: a program that never ends (the old behaviour,
// where the probe kept the runtime from ending it) fails the test rather
// than hanging it.
func bounded(argv ...string) []string {
	return append([]string{"timeout", "-s", "KILL", strconv.Itoa(int(3 * probablyStillBlocked / time.Second))}, argv...)
}

// TestGoDeadlockUnderRun: a program with the probe whose goroutines all
// block dies under lockwatch run as it does without lockwatch, with the
// runtime's message and status 2, which run passes on; lockwatch's report
// of the deadlock it found comes first.
func TestGoDeadlockUnderRun(t *testing.T) {
	bin := buildAsleep(t)
	for _, mode := range []string{"mutex", "chan"} {
		t.Run(mode, func(t *testing.T) {
			code, out, errOut := lockwatch(t, append([]string{"run", "--"}, bounded(bin, "-mode="+mode)...)...)
			if code != 2 {
				t.Fatalf("run: exit %d; want 2 (the runtime's deadlock)\n%s%s", code, out, errOut)
			}
			fatal := strings.Index(errOut, goDeadlock)
			if fatal < 0 {
				t.Fatalf("no %q:\n%s", goDeadlock, errOut)
			}
			if !strings.Contains(errOut, "its probe stands down") {
				t.Errorf("no stand-down line:\n%s", errOut)
			}
			if mode == "mutex" {
				if rep := strings.Index(errOut, "SELF-DEADLOCK"); rep < 0 || rep > fatal {
					t.Errorf("lockwatch's report (SELF-DEADLOCK) is not before the runtime's message:\n%s", errOut)
				}
			}
		})
	}
}

// TestAwakeNotStoodDown: a program that sleeps, waits on a timer's
// channel or reads a pipe is never asked to stand down, and is not ended.
func TestAwakeNotStoodDown(t *testing.T) {
	bin := buildAsleep(t)
	for _, mode := range []string{"sleep", "timer", "pipe"} {
		t.Run(mode, func(t *testing.T) {
			code, out, errOut := lockwatch(t, "run", "--", bin, "-mode="+mode, "-for=2s")
			if code != 0 {
				t.Fatalf("run: exit %d; want 0\n%s%s", code, out, errOut)
			}
			if !strings.Contains(out, "asleep: probe serving") || strings.Contains(errOut, "stands down") {
				t.Errorf("the probe stood down:\n%s%s", out, errOut)
			}
		})
	}
}

// TestStoodDownComesBack: every goroutine blocked, but a time.AfterFunc
// pending, which lockwatch cannot see: the probe stands down, the runtime
// does not end the program (a timer will wake it), and the probe serves
// again once the program has run its next garbage collection.
func TestStoodDownComesBack(t *testing.T) {
	bin := buildAsleep(t)
	code, out, errOut := lockwatch(t, append([]string{"run", "--"}, bounded(bin, "-mode=afterfunc", "-for=500ms")...)...)
	if code != 0 {
		t.Fatalf("run: exit %d; want 0\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "its probe stands down") || !strings.Contains(errOut, "the probe serves again") || !strings.Contains(out, "asleep: probe back") {
		t.Errorf("want the probe stood down, then back:\n%s%s", out, errOut)
	}
}

// TestGoTestDeadlockUnderRun: `go test -timeout=0` of a test that deadlocks,
// with the probe, ends at once under lockwatch run, as with sync, rather
// than hanging. (With a -timeout, its alarm is a timer pending: the
// runtime waits for it, with sync too; and a test built with cgo, as by
// -race, is never ended so.)
func TestGoTestDeadlockUnderRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test")
	}
	code, out, errOut := lockwatch(t, append([]string{"run", "--"}, bounded("env", "CGO_ENABLED=0", "GOFLAGS=", "go", "test", "-count=1", "-timeout=0", "./testdata/deadtest")...)...)
	if code != 1 || !strings.Contains(out+errOut, goDeadlock) {
		t.Fatalf("run go test: exit %d; want 1 (FAIL), with %q\n%s%s", code, goDeadlock, out, errOut)
	}
}

// TestAsleep is asleep's verdict on images: who is the probe's, which waits
// only another goroutine ends, and timers.
func TestAsleep(t *testing.T) {
	probeG := goproc.Goroutine{ID: 5, Status: goproc.StateWaiting, WaitReason: "IO wait",
		Frames: []goproc.Frame{{Func: "github.com/lockwatch/lockwatch/probe.(*listener).accept"}, {Func: "github.com/lockwatch/lockwatch/probe.(*Agent).serve"}}}
	handler := goproc.Goroutine{ID: 9, Status: goproc.StateRunning,
		CreatedBy: &goproc.Frame{Func: "github.com/lockwatch/lockwatch/probe.(*Agent).serve"}}
	sys := goproc.Goroutine{ID: 2, Status: goproc.StateWaiting, WaitReason: "force gc (idle)", System: true}
	main := func(reason string, chans ...uint64) goproc.Goroutine {
		return goproc.Goroutine{ID: 1, Status: goproc.StateWaiting, WaitReason: reason, Chans: chans, Frames: []goproc.Frame{{Func: "main.main"}, {Func: "runtime.main"}}}
	}
	timers := func(timed ...uint64) func([]uint64) (map[uint64]bool, error) {
		return func(cs []uint64) (map[uint64]bool, error) {
			m := map[uint64]bool{}
			for _, c := range timed {
				m[c] = true
			}
			return m, nil
		}
	}
	tests := []struct {
		name   string
		gs     []goproc.Goroutine
		timed  []uint64
		asleep bool
	}{
		{"mutex", []goproc.Goroutine{main("sync.Mutex.Lock"), probeG, handler, sys}, nil, true},
		{"channels", []goproc.Goroutine{main("chan receive", 0x10), probeG}, nil, true},
		{"timer channel", []goproc.Goroutine{main("select", 0x10, 0x20), probeG}, []uint64{0x20}, false},
		{"channels unread", []goproc.Goroutine{main("chan receive"), probeG}, nil, false},
		{"sleep", []goproc.Goroutine{main("sleep"), probeG}, nil, false},
		{"network", []goproc.Goroutine{main("IO wait"), probeG}, nil, false},
		{"syscall", []goproc.Goroutine{{ID: 1, Status: goproc.StateSyscall}, probeG}, nil, false},
		{"running", []goproc.Goroutine{main("sync.Mutex.Lock"), {ID: 7, Status: goproc.StateRunnable}, probeG}, nil, false},
		{"synctest", []goproc.Goroutine{main("chan receive (durable)"), probeG}, nil, false},
		{"only the probe", []goproc.Goroutine{probeG, sys}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, why := asleep(&goproc.Image{Goroutines: tt.gs}, timers(tt.timed...))
			if (sig != "") != tt.asleep {
				t.Errorf("asleep = %q (%s); want asleep %v", sig, why, tt.asleep)
			}
		})
	}
	if sig, _ := asleep(&goproc.Image{Goroutines: []goproc.Goroutine{main("sync.Mutex.Lock")}, Inconsistent: 1}, timers()); sig != "" {
		t.Errorf("an image with goroutines left out is asleep: %q", sig)
	}
}
