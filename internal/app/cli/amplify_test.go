package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/lockreg"
)

// TestAmplifyingInputsBounded runs `lockwatch stacks` (a process each) on
// inputs small to read and large to build: a 16 KB gzipped profile of 8.4
// million empty samples, a traceback of tiny goroutines that do not group
// (16 MiB of them; the audit's 63 MiB under make stress-hostile), and
// random bytes, and checks each from the child's rusage against the 256
// MiB goal. Before the bounds on what is built, the profile took 1.3 GB,
// the traceback 2 GB at 63 MiB, the random bytes 171 MB.
func TestAmplifyingInputsBounded(t *testing.T) {
	bin := lockwatchBin(t)
	tiny := 16 << 20
	if stress {
		tiny = 63 << 20
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		data []byte
		code int
		says string // in stderr (an error) or stdout (a note)
	}{
		{"profile", hostile.AmplifyingProfile(16<<20 - 1024), ExitUsage, "samples, more than the 131072 distinct stacks"},
		{"traceback", hostile.TinyGoroutines(tiny), ExitOK, "were counted, not kept"},
		{"random", hostile.RandomBytes(64<<20, 7), ExitUsage, "not a goroutine profile stacks reads"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"stacks", path}, {"stacks", "-o", "json", path}} {
				m := measure(t, bin, nil, args...)
				t.Logf("%v: exit %d, %.1f MiB, cpu %v, wall %v", args, m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
				if m.code != tt.code || !strings.Contains(m.stdout+m.stderr, tt.says) {
					t.Errorf("%v: exit %d, %.300q; want exit %d saying %q", args, m.code, m.stderr, tt.code, tt.says)
				}
				if m.maxRSS > goalRSS {
					t.Errorf("%v took %d MiB; want at most %d MiB", args, m.maxRSS>>20, goalRSS>>20)
				}
			}
		})
	}
}

// hostileProbeRole joins the run, serves a probe socket of its own that
// answers every request with what amplifies most (a goroutine profile of
// 8.4 million empty samples, an execution trace of 32 MiB of one-frame
// stacks (hostile.AmplifyingTrace), a text
// dump of tiny goroutines, 4 MiB of empty JSON objects), says "ready", and
// waits for the lock named by LOCKWATCH_TEST_HOSTILE_LOCK (lock.b, whose
// holder the test kills: a waiter of a dead holder, whose live stacks a
// report asks for), or, with LOCKWATCH_TEST_HOSTILE_HOLD set, takes it and
// holds it (a stuck holder, whose live stacks come from a trace or a text
// dump).
func hostileProbeRole(dir string) int {
	r, err := lockreg.Open(dir, lockreg.Options{Role: "hostile-probe"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	st, err := proc.ReadStat(os.Getpid())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ln, err := net.Listen("unix", probeclient.SocketPath(dir, st.Identity()))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	profile := hostile.AmplifyingProfile(16<<20 - 1024)
	// The trace (under the 32 MiB a trace answer may take) and the text
	// dump are made when first asked for: only the stuck holder is.
	trace := sync.OnceValue(func() []byte { return hostile.AmplifyingTrace(32<<20 - 128<<10) })
	text := sync.OnceValue(func() []byte { return hostile.TinyGoroutines(32<<20 - 1) })
	var objects bytes.Buffer
	objects.WriteString(`{"v":1,"ok":true,"mutexes":{"pid":1,"mutexes":[{}`)
	for objects.Len() < 4<<20-64 {
		objects.WriteString(`,{}`)
	}
	objects.WriteString(`]}}`)
	frame := func(c net.Conn, b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		c.Write(n[:])
		c.Write(b)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n [4]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				b := make([]byte, min(binary.BigEndian.Uint32(n[:]), 4096))
				io.ReadFull(c, b)
				var q struct {
					Op          string
					Trace, Text bool
				}
				json.Unmarshal(b, &q)
				switch {
				case q.Op == "goroutines" && q.Text:
					frame(c, fmt.Appendf(nil, `{"v":1,"ok":true,"dump":{"format":"text","size":%d}}`, len(text())))
					frame(c, text())
				case q.Op == "goroutines" && q.Trace:
					frame(c, fmt.Appendf(nil, `{"v":1,"ok":true,"dump":{"format":"trace","size":%d}}`, len(trace())))
					frame(c, trace())
				case q.Op == "goroutines":
					frame(c, fmt.Appendf(nil, `{"v":1,"ok":true,"dump":{"format":"proto","size":%d}}`, len(profile)))
					frame(c, profile)
				default:
					frame(c, objects.Bytes())
				}
			}()
		}
	}()
	m, err := r.Mutex(os.Getenv("LOCKWATCH_TEST_HOSTILE_LOCK"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if os.Getenv("LOCKWATCH_TEST_HOSTILE_HOLD") != "" {
		if err := m.Lock(context.Background()); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin) // holds it until the test ends
		return 0
	}
	fmt.Println("ready")
	m.Lock(context.Background()) // waits for ever (Stall), or until the test ends
	return 0
}

// TestHostileProbesBounded: four members of a run serve amplifying answers
// from their probe sockets, and wait for a lock whose holder died, so that
// `lockwatch attach` asks each of them for its live stacks and its
// mutexes. Measured from the child's rusage: before the bounds on what is
// built, four such members took attach to 1.26 GB.
func TestHostileProbesBounded(t *testing.T) {
	bin := lockwatchBin(t)
	dir := runDir(t)
	holder, _, out := child(t, "ba", dir)
	expectLine(t, out, "locked")
	holder.Process.Kill()
	holder.Wait()
	for range 4 {
		_, _, out := child(t, "hostile-probe", dir, "LOCKWATCH_TEST_HOSTILE_LOCK=lock.b")
		expectLine(t, out, "ready")
	}
	// And a stuck holder, with waiters: its live stacks come from an
	// execution trace (an amplifying one here), or with --text-dumps from a text
	// dump (32 MiB of tiny goroutines).
	_, _, out = child(t, "hostile-probe", dir, "LOCKWATCH_TEST_HOSTILE_LOCK=lock.h", "LOCKWATCH_TEST_HOSTILE_HOLD=1")
	expectLine(t, out, "ready")
	for range 3 {
		_, _, out := child(t, "hostile-probe", dir, "LOCKWATCH_TEST_HOSTILE_LOCK=lock.h")
		expectLine(t, out, "ready")
	}
	for _, text := range []bool{false, true} {
		args := []string{"attach", "-o", "json", "--live-stacks=0", "--stuck-after=1ms", dir}
		if text {
			args = []string{"attach", "--text-dumps", "-o", "json", "--live-stacks=0", "--stuck-after=1ms", dir}
		}
		m := measure(t, bin, nil, args...)
		t.Logf("%v: exit %d, %.1f MiB, cpu %v, wall %v", args, m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
		if m.code != ExitDeadlock {
			t.Fatalf("attach: exit %d; want %d\n%s", m.code, ExitDeadlock, m.stderr)
		}
		if m.maxRSS > goalRSS {
			t.Errorf("%v took %d MiB; want at most %d MiB", args, m.maxRSS>>20, goalRSS>>20)
		}
	}
	m := measure(t, bin, nil, "attach", "-o", "json", "--live-stacks=0", dir)
	t.Logf("attach: exit %d, %.1f MiB, cpu %v, wall %v", m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
	if m.code != ExitDeadlock {
		t.Fatalf("attach: exit %d; want %d (a dead holder)\n%s", m.code, ExitDeadlock, m.stderr)
	}
	if m.maxRSS > goalRSS {
		t.Errorf("attach took %d MiB; want at most %d MiB", m.maxRSS>>20, goalRSS>>20)
	}
	r := readReport(t, []byte(m.stdout))
	notes := strings.Join(r.Notes, "\n")
	if !strings.Contains(notes, "more than the 131072 distinct stacks") || !strings.Contains(notes, "JSON values") {
		t.Errorf("notes %q; want the refused profiles and answers said", notes)
	}
}
