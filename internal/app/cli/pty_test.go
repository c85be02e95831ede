package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/probe"
)

// printerLines is how many lines the printer role writes.
const printerLines = 40

// printerRole joins the run and prints numbered lines, paced so that run's
// status line is redrawn between them.
func printerRole() int {
	a, err := probe.Start(probe.Options{Role: "printer"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer a.Close()
	for i := 1; i <= printerLines; i++ {
		fmt.Printf("line %d of the program\n", i)
		time.Sleep(quiescent) // pacing the output, not waiting for a condition
	}
	return 0
}

// openPTY opens a pseudo-terminal of rows x cols.
func openPTY(t testing.TB, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// screen is a small terminal emulator: enough of VT100 (cursor moves,
// erase in line, scrolling region, save and restore) to tell where each
// byte lockwatch and its program write ends up.
type screen struct {
	rows, cols     int
	cells          [][]rune
	r, c           int
	top, bot       int
	savedR, savedC int
	scrolled       []string        // rows that scrolled off the top
	onRestore      func(s *screen) // after each ESC 8
	onNewline      func(s *screen) // after each line feed
	pending        []byte          // an incomplete sequence or character
}

func newScreen(rows, cols int) *screen {
	s := &screen{rows: rows, cols: cols, bot: rows - 1}
	for range rows {
		s.cells = append(s.cells, blankRow(cols))
	}
	return s
}

func blankRow(cols int) []rune {
	r := make([]rune, cols)
	for i := range r {
		r[i] = ' '
	}
	return r
}

// row is row i without its trailing blanks.
func (s *screen) row(i int) string { return strings.TrimRight(string(s.cells[i]), " ") }

func (s *screen) lineFeed() {
	if s.r == s.bot {
		if s.top == 0 {
			s.scrolled = append(s.scrolled, s.row(0))
		}
		copy(s.cells[s.top:s.bot], s.cells[s.top+1:s.bot+1])
		s.cells[s.bot] = blankRow(s.cols)
	} else if s.r < s.rows-1 {
		s.r++
	}
	if s.onNewline != nil {
		s.onNewline(s)
	}
}

func (s *screen) Write(p []byte) (int, error) {
	b := append(s.pending, p...)
	s.pending = nil
	for len(b) > 0 {
		n := s.step(b)
		if n == 0 {
			s.pending = append([]byte{}, b...) // wait for the rest
			break
		}
		b = b[n:]
	}
	return len(p), nil
}

// step handles the sequence at the start of b and returns its length, or
// 0 if b holds only part of it.
func (s *screen) step(b []byte) int {
	switch b[0] {
	case '\r':
		s.c = 0
		return 1
	case '\n':
		s.lineFeed()
		return 1
	case '\b':
		s.c = max(s.c-1, 0)
		return 1
	case 0x1b:
		if len(b) < 2 {
			return 0
		}
		switch b[1] {
		case '7':
			s.savedR, s.savedC = s.r, s.c
			return 2
		case '8':
			s.r, s.c = s.savedR, s.savedC
			if s.onRestore != nil {
				s.onRestore(s)
			}
			return 2
		case '[':
			i := 2
			for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
				i++
			}
			if i == len(b) {
				return 0
			}
			s.csi(string(b[2:i]), b[i])
			return i + 1
		}
		return 2
	}
	if b[0] < 0x20 {
		return 1
	}
	if !utf8.FullRune(b) {
		return 0
	}
	ch, n := utf8.DecodeRune(b)
	if s.c >= s.cols {
		s.c = 0
		s.lineFeed()
	}
	s.cells[s.r][s.c] = ch
	s.c++
	return n
}

func (s *screen) csi(params string, final byte) {
	if strings.HasPrefix(params, "?") {
		return // modes
	}
	var p []int
	for _, f := range strings.Split(params, ";") {
		n, _ := strconv.Atoi(f)
		p = append(p, n)
	}
	arg := func(i, def int) int {
		if i < len(p) && p[i] > 0 {
			return p[i]
		}
		return def
	}
	switch final {
	case 'H', 'f':
		s.r, s.c = min(arg(0, 1), s.rows)-1, min(arg(1, 1), s.cols)-1
	case 'A':
		s.r = max(s.r-arg(0, 1), 0)
	case 'B':
		s.r = min(s.r+arg(0, 1), s.rows-1)
	case 'K':
		switch arg(0, 0) {
		case 0:
			for i := s.c; i < s.cols; i++ {
				s.cells[s.r][i] = ' '
			}
		case 2:
			s.cells[s.r] = blankRow(s.cols)
		}
	case 'J':
		for i := range s.rows {
			s.cells[i] = blankRow(s.cols)
		}
	case 'r':
		s.top, s.bot = arg(0, 1)-1, arg(1, s.rows)-1
		s.r, s.c = 0, 0
	}
}

// TestStatusLinePTY runs a program that prints lines under 'lockwatch run'
// in a pseudo-terminal, and checks on an emulated screen that the status
// line stays on the bottom row, under the program's output: no row ever
// holds both a line of the program and the status line, every line of the
// program arrives whole, and the status line counts "1 process".
func TestStatusLinePTY(t *testing.T) {
	lw, _ := bins(t)
	const rows, cols = 24, 100
	master, slave := openPTY(t, rows, cols)
	cmd := exec.Command(lw, "run", "--interval=10ms", "--", os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), roleEnv+"=printer", "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var raw bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&raw, master)
		read <- err
	}()
	werr := cmd.Wait()
	if err := <-read; err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, werr); code != 0 {
		t.Fatalf("got exit %d; want 0\n%q", code, raw.String())
	}

	scr := newScreen(rows, cols)
	var mixed []string
	statusDrawn, singular := 0, false
	check := func(s *screen) {
		for i := range s.rows {
			if r := s.row(i); strings.Contains(r, "line ") && strings.Contains(r, "lockwatch:") {
				mixed = append(mixed, r)
			}
		}
	}
	scr.onNewline = check
	scr.onRestore = func(s *screen) {
		check(s)
		if r := s.row(rows - 1); strings.HasPrefix(r, "lockwatch: ") {
			statusDrawn++
			singular = singular || strings.Contains(r, "lockwatch: 1 process, ")
		}
	}
	scr.Write(raw.Bytes())
	check(scr)
	if len(mixed) > 0 {
		t.Errorf("rows holding both the program's output and the status line: %q", mixed)
	}
	if statusDrawn == 0 || !singular {
		t.Errorf("status line drawn on the bottom row %d times, singular %v; want it drawn, saying \"1 process\"\n%q", statusDrawn, singular, raw.String())
	}
	all := append(scr.scrolled, func() []string {
		var out []string
		for i := range rows {
			out = append(out, scr.row(i))
		}
		return out
	}()...)
	for i := 1; i <= printerLines; i++ {
		want := fmt.Sprintf("line %d of the program", i)
		n := 0
		for _, r := range all {
			if r == want {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q is on %d rows of the screen and its scrollback; want 1", want, n)
		}
	}
	if r := scr.row(rows - 1); strings.HasPrefix(r, "lockwatch: 1 process") {
		t.Errorf("the status line is left on the screen after the run: %q", r)
	}
	if scr.top != 0 || scr.bot != rows-1 {
		t.Errorf("scrolling region left at rows %d-%d; want the whole screen back", scr.top+1, scr.bot+1)
	}
}

// TestColourTermDumb: colour on a terminal, not with TERM=dumb or NO_COLOR,
// nor in a pipe.
func TestColourTermDumb(t *testing.T) {
	_, slave := openPTY(t, 24, 80)
	t.Setenv("NO_COLOR", "")
	os.Unsetenv("NO_COLOR")
	t.Setenv("TERM", "xterm-256color")
	if !colour(slave) {
		t.Errorf("colour on a terminal with TERM=xterm-256color: got false; want true")
	}
	t.Setenv("TERM", "dumb")
	if colour(slave) {
		t.Errorf("colour with TERM=dumb: got true; want false")
	}
	t.Setenv("TERM", "xterm")
	t.Setenv("NO_COLOR", "1")
	if colour(slave) {
		t.Errorf("colour with NO_COLOR=1: got true; want false")
	}
	os.Unsetenv("NO_COLOR")
	if colour(&bytes.Buffer{}) {
		t.Errorf("colour in a buffer: got true; want false")
	}
}
