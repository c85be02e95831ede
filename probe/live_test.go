package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
)

// liveModes are the idle program's ways of being live with every goroutine
// blocked but one that the world outside wakes (testdata/idle), and how
// many times TestLiveProgramKeepsItsProbe starts each. A sleeper of 250 ms
// under GOMAXPROCS=1 is the one that once fell into step with the probe's
// looks: it is started most.
var liveModes = []struct {
	mode   string
	starts int
}{
	{"sleep", 6}, {"afterfunc", 2}, {"deadline", 2}, {"ticker", 1}, {"timerchan", 1},
	{"pipe", 1}, {"accept", 1}, {"syscall", 1}, {"signal", 1},
}

// liveFor is how long TestLiveProgramKeepsItsProbe watches the programs:
// the probe could stand down a second after its first look that found one
// asleep, and looks at an awake one every second at least.
const liveFor = 5 * time.Second

// liveStartsEnv multiplies the starts of TestLiveProgramKeepsItsProbe, and
// liveForEnv sets how long it watches (for the statistics of
// docs/benchmarks.md).
const (
	liveStartsEnv = "LOCKWATCH_TEST_LIVE_STARTS"
	liveForEnv    = "LOCKWATCH_TEST_LIVE_FOR"
)

// A liveStart is one start of the idle program, watched.
type liveStart struct {
	mode string
	c    *program
	sock string

	mu         sync.Mutex
	gone, back time.Time // when its socket went away, and came back
	asleep     int       // looks that found it asleep
	looks      int
	last       []string // its last looks, for a failure's message
}

// TestLiveProgramKeepsItsProbe: programs that are not deadlocked, each
// with every goroutine blocked but one that the world outside wakes (a
// sleep of 250 ms in a loop, a time.AfterFunc that arms the next, a
// context's deadline, a ticker, a timer's channel, a read in the
// runtime's poller, an Accept, a blocking read(2), a signal), run with
// GOMAXPROCS=1 and the probe started by probe.Start, many at once. The
// probe never stands down (its socket stays), says nothing on stderr, and
// answers at the end; the runtime never ends a program.
func TestLiveProgramKeepsItsProbe(t *testing.T) {
	bin := buildProgram(t, "idle", false)
	mult, watchFor := 1, liveFor
	if s := os.Getenv(liveStartsEnv); s != "" {
		var err error
		if mult, err = strconv.Atoi(s); err != nil || mult < 1 {
			t.Fatalf("%s=%q: want a positive count", liveStartsEnv, s)
		}
	}
	if s := os.Getenv(liveForEnv); s != "" {
		var err error
		if watchFor, err = time.ParseDuration(s); err != nil {
			t.Fatalf("%s=%q: %v", liveForEnv, s, err)
		}
	}
	var starts []*liveStart
	for _, m := range liveModes {
		for range m.starts * mult {
			starts = append(starts, &liveStart{mode: m.mode, c: startProgramEnv(t, bin, []string{"GOMAXPROCS=1"}, m.mode)})
		}
	}
	for _, s := range starts {
		s.sock = s.c.ready(t)
		go s.read()
	}
	watchLive(starts, watchFor)

	ctx := context.Background()
	downs, asleep, looks := 0, 0, 0
	byMode := map[string]*[3]int{} // starts, looks, asleep
	for _, s := range starts {
		s.mu.Lock()
		asleep += s.asleep
		looks += s.looks
		if byMode[s.mode] == nil {
			byMode[s.mode] = new([3]int)
		}
		byMode[s.mode][0]++
		byMode[s.mode][1] += s.looks
		byMode[s.mode][2] += s.asleep
		msg := fmt.Sprintf("%s (pid %d): %d looks, %d asleep; the last: %q", s.mode, s.c.cmd.Process.Pid, s.looks, s.asleep, s.last)
		gone, back := s.gone, s.back
		s.mu.Unlock()
		if !gone.IsZero() {
			downs++
			ret := "not back"
			if !back.IsZero() {
				ret = fmt.Sprintf("back after %v", back.Sub(gone).Round(time.Millisecond))
			}
			t.Errorf("%s: the probe stood down (%s)", msg, ret)
		}
		select {
		case <-s.c.waited:
			t.Errorf("%s: the program ended: %v\n%s", msg, s.c.err, s.c.stderr.String())
			continue
		default:
		}
		if out := s.c.stderr.String(); out != "" {
			t.Errorf("%s: the program said on stderr:\n%s", msg, out)
		}
		if gone.IsZero() {
			if info, err := (&probeclient.Client{Path: s.sock}).Info(ctx); err != nil || info.PID != s.c.cmd.Process.Pid {
				t.Errorf("%s: the probe does not answer: %+v, %v", msg, info, err)
			}
		}
	}
	var modes []string
	for _, m := range liveModes {
		n := byMode[m.mode]
		modes = append(modes, fmt.Sprintf("%s %d/%d/%d", m.mode, n[0], n[1], n[2]))
	}
	t.Logf("%d starts, %v each: %d stand-downs; %d looks, %d of them found a program asleep (starts/looks/asleep: %s)",
		len(starts), watchFor, downs, looks, asleep, strings.Join(modes, ", "))
}

// read reads the program's looks until its stdout ends.
func (s *liveStart) read() {
	for {
		l := s.c.line()
		if l == "" {
			return
		}
		s.mu.Lock()
		s.looks++
		if strings.HasPrefix(l, "look asleep") {
			s.asleep++
		}
		s.last = append(s.last, l)
		if len(s.last) > 6 {
			s.last = s.last[1:]
		}
		s.mu.Unlock()
	}
}

// watchLive watches each start's socket file for d: when it went away and
// when it came back.
func watchLive(starts []*liveStart, d time.Duration) {
	end := time.Now().Add(d)
	for now := time.Now(); now.Before(end); now = time.Now() {
		for _, s := range starts {
			_, err := os.Stat(s.sock)
			s.mu.Lock()
			switch {
			case errors.Is(err, fs.ErrNotExist) && s.gone.IsZero():
				s.gone = now
			case err == nil && !s.gone.IsZero() && s.back.IsZero():
				s.back = now
			}
			s.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
}
