package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/lockreg"
)

// liveScreen feeds what a pseudo-terminal's master reads into a screen,
// for a test to look at while the program still writes.
type liveScreen struct {
	mu   sync.Mutex
	scr  *screen
	raw  bytes.Buffer
	done chan error
}

func newLiveScreen(master *os.File, rows, cols int) *liveScreen {
	l := &liveScreen{scr: newScreen(rows, cols), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			l.mu.Lock()
			l.raw.Write(buf[:n])
			l.scr.Write(buf[:n])
			l.mu.Unlock()
			if err != nil {
				l.done <- err
				return
			}
		}
	}()
	return l
}

// waitFor polls the screen until cond holds (called with the screen
// locked), or fails the test after probablyStillBlocked.
func (l *liveScreen) waitFor(t *testing.T, what string, cond func(s *screen) bool) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		l.mu.Lock()
		ok := cond(l.scr)
		l.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not on the screen after %v:\n%s", what, probablyStillBlocked, l.dump())
		}
		time.Sleep(quiescent)
	}
}

// dump is the screen's rows, numbered, and the raw bytes read.
func (l *liveScreen) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i := range l.scr.rows {
		fmt.Fprintf(&b, "%2d|%s\n", i+1, l.scr.row(i))
	}
	raw := l.raw.Bytes()
	fmt.Fprintf(&b, "last bytes read: %q", raw[max(0, len(raw)-2000):])
	return b.String()
}

// TestWatchTerminal: on a terminal, watch redraws the report in place (the
// screen cleared, nothing scrolled off), cut to the terminal's width (a
// line too long ends in a mark) and to its height (the report's first
// lines, then one that says how many more there are); a change is redrawn,
// and Ctrl-C without a deadlock exits 0.
func TestWatchTerminal(t *testing.T) {
	t.Setenv("COLUMNS", "") // the terminal's own size, not the environment's
	t.Setenv("LINES", "")
	const rows, cols = 14, 80
	master, slave := openPTY(t, rows, cols)

	dir := runDir(t)
	reg, err := lockreg.Open(dir, lockreg.Options{Role: "main"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	long := "a." + strings.Repeat("long", 15) // sorts first; its row is wider than the screen
	var held []*lockreg.Mutex
	for i := range 12 { // fewer than lockreg tracks for lock order, or a note takes rows
		name := fmt.Sprintf("lock.%02d", i)
		if i == 0 {
			name = long
		}
		m, err := reg.Mutex(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
		held = append(held, m)
	}

	scr := newLiveScreen(master, rows, cols)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- Main(ctx, []string{"watch", "--interval=20ms", dir}, nil, slave, io.Discard) }()

	more := func(s *screen) bool {
		return strings.HasPrefix(s.row(0), "lockwatch report: ") &&
			strings.HasPrefix(s.row(rows-2), "... ") && strings.HasSuffix(s.row(rows-2), " more lines ('lockwatch attach' prints them all)")
	}
	scr.waitFor(t, "the report's first lines and the count of the rest", more)
	scr.waitFor(t, "the long lock's row cut to the width", func(s *screen) bool {
		for i := range rows {
			if r := s.row(i); strings.Contains(r, "a.longlong") {
				return strings.HasSuffix(r, cutMark) && len([]rune(r)) == cols
			}
		}
		return false
	})
	// A change (the long lock released) is redrawn: free, it is left out.
	if err := held[0].Unlock(); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, "the release redrawn", func(s *screen) bool {
		for i := range rows {
			if strings.Contains(s.row(i), "a.longlong") {
				return false
			}
		}
		for i := range rows {
			if strings.HasPrefix(s.row(i), "LOCKS (1 free not shown)") {
				return more(s)
			}
		}
		return false
	})
	cancel()
	select {
	case c := <-code:
		if c != ExitOK {
			t.Errorf("got exit %d on Ctrl-C without a deadlock; want %d", c, ExitOK)
		}
	case <-time.After(probablyStillBlocked):
		t.Fatal("watch did not end when its context did")
	}
	slave.Close()
	<-scr.done
	if n := len(scr.scr.scrolled); n > 0 {
		t.Errorf("%d rows scrolled off the screen; want every report drawn in place:\n%q", n, scr.scr.scrolled)
	}
}

// TestStatusLineResize: with its standard input not a terminal, 'lockwatch
// run' keeps the terminal's foreground, so the terminal's change of size
// (SIGWINCH) reaches it, and it moves the status line to the new bottom row.
func TestStatusLineResize(t *testing.T) {
	t.Run("stdin a pipe", func(t *testing.T) { statusLineResize(t, false) })
	// With its standard input the terminal, 'lockwatch run' gives the
	// terminal's foreground to PROGRAM, and the kernel sends SIGWINCH to
	// PROGRAM's process group only: the status line follows the size it
	// reads at each redraw.
	t.Run("stdin the terminal", func(t *testing.T) { statusLineResize(t, true) })
}

func statusLineResize(t *testing.T, stdinTerminal bool) {
	lw, _ := bins(t)
	const cols = 100
	master, slave := openPTY(t, 24, cols)
	cmd := exec.Command(lw, "run", "--interval=10ms", "--", os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), roleEnv+"=joiner", "TERM=xterm")
	end := func() { _, _ = master.Write([]byte{4}) } // Ctrl-D: the joiner reads the end of its input
	if stdinTerminal {
		cmd.Stdin = slave
	} else {
		stdin, err := cmd.StdinPipe() // the joiner ends when it closes
		if err != nil {
			t.Fatal(err)
		}
		end = func() { stdin.Close() }
	}
	cmd.Stdout, cmd.Stderr = slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 1}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	slave.Close()

	scr := newLiveScreen(master, 30, cols)
	statusOn := func(row int) func(s *screen) bool {
		return func(s *screen) bool { return strings.HasPrefix(s.row(row-1), "lockwatch: 1 process, ") }
	}
	scr.waitFor(t, "the status line on row 24", statusOn(24))
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: cols}); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, "the status line on row 30 after the resize", statusOn(30))
	end()
	werr := cmd.Wait()
	if err := <-scr.done; err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, werr); code != 0 {
		t.Fatalf("got exit %d; want 0\n%s", code, scr.dump())
	}
	if s := scr.scr; s.top != 0 || s.bot != s.rows-1 || strings.HasPrefix(s.row(29), "lockwatch: ") {
		t.Errorf("after the run: scrolling region rows %d-%d, bottom row %q; want the whole screen back, the status line gone",
			s.top+1, s.bot+1, s.row(29))
	}
}

// A terminal of fewer than 3 rows has no room for a status line: none is
// set up, and one set up on a terminal that shrinks to that is taken down
// (the whole screen scrolls again) and draws nothing more.
func TestStatusLineSmallTerminal(t *testing.T) {
	t.Setenv("TERM", "xterm")
	_, slave := openPTY(t, 2, 80)
	if s := newStatusLine(slave, time.Now()); s.on {
		t.Errorf("status line on a 2-row terminal: on; want off")
	}
	_, slave = openPTY(t, 24, 80)
	s := newStatusLine(slave, time.Now())
	if !s.on || s.rows != 24 {
		t.Fatalf("status line on a 24-row terminal: on %v, rows %d; want on, 24", s.on, s.rows)
	}
	var out strings.Builder
	s.w = safeout.NewWriter(&out) // what it writes from here on, as a terminal gets it
	s.text("waiting")
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 2, Col: 80}); err != nil {
		t.Fatal(err)
	}
	s.resize()
	if s.on || !strings.HasSuffix(out.String(), "\x1b7\x1b[r\x1b[24;1H\x1b[K\x1b8") {
		t.Errorf("after shrinking to 2 rows: on %v, wrote %q; want off, the scrolling region reset and row 24 cleared", s.on, out.String())
	}
	out.Reset()
	s.text("more")
	s.resize()
	s.teardown()
	if out.Len() > 0 {
		t.Errorf("a status line taken down wrote %q; want nothing", out.String())
	}
}
