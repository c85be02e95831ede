package cli

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
)

// termSize is the size of the terminal w writes to: COLUMNS and LINES when
// set (as ls, kubectl and git honour them, in a pipe too), else the
// terminal's own; 0 for what is unknown (a pipe, a file: no limit).
func termSize(w io.Writer) (cols, rows int) {
	if f, ok := safeout.Raw(w).(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			cols, rows = int(ws.Col), int(ws.Row)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		cols = n
	}
	if n, err := strconv.Atoi(os.Getenv("LINES")); err == nil && n > 0 {
		rows = n
	}
	return cols, rows
}

// termWidth is termSize's columns.
func termWidth(w io.Writer) int {
	cols, _ := termSize(w)
	return cols
}

// minWidth is the narrowest width lines are cut to: below it, cutting
// would leave nothing readable.
const minWidth = 40

// cutMark ends a line cut to the terminal's width.
const cutMark = "…"

// lineWriter writes lines without their trailing blanks, each cut to width
// columns (0: not cut) with cutMark as its last column. ANSI escape
// sequences take no column; a tab takes it to the next multiple of 8.
type lineWriter struct {
	w     *bufio.Writer
	width int
	line  []byte
}

func fitWidth(w io.Writer, width int) *lineWriter {
	if width > 0 {
		width = max(width, minWidth)
	}
	return &lineWriter{w: bufio.NewWriter(w), width: width}
}

func (l *lineWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			l.line = append(l.line, c)
			continue
		}
		l.w.Write(fitLine(l.line, l.width))
		l.w.WriteByte('\n')
		l.line = l.line[:0]
	}
	return len(p), nil
}

// Flush writes a last line without its line ending, and flushes.
func (l *lineWriter) Flush() error {
	if len(l.line) > 0 {
		l.w.Write(fitLine(l.line, l.width))
		l.line = l.line[:0]
	}
	return l.w.Flush()
}

// fitLine trims the trailing blanks of line and cuts it to width columns.
func fitLine(line []byte, width int) []byte {
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if width <= 0 || lineCols(line, -1) <= width {
		return line
	}
	out := make([]byte, 0, width+16)
	esc := false
	lineCols(line, width-1, func(part []byte, isEsc bool) {
		out = append(out, part...)
		esc = esc || isEsc
	})
	out = append(out, cutMark...)
	if esc {
		out = append(out, safeout.Ctl("\x1b[0m")...)
	}
	return out
}

// lineCols counts the columns of s: an ANSI escape sequence takes none, a
// tab goes to the next multiple of 8. With limit >= 0 it stops before the
// character that would go past limit columns, and gives each part it
// passes (a character or an escape sequence) to each.
func lineCols(s []byte, limit int, each ...func(part []byte, esc bool)) int {
	col := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			j = min(j+1, len(s))
			for _, f := range each {
				f(s[i:j], true)
			}
			i = j
			continue
		}
		_, n := utf8.DecodeRune(s[i:])
		next := col + 1
		if s[i] == '\t' {
			next = (col/8 + 1) * 8
		}
		if limit >= 0 && next > limit {
			break
		}
		for _, f := range each {
			f(s[i:i+n], false)
		}
		col, i = next, i+n
	}
	return col
}

// foldLine breaks line at blanks into lines of at most width columns (0: no
// limit), the later ones indented under the first's text. A word longer
// than a line is left to be cut.
func foldLine(line string, width int) []string {
	if width <= 0 || lineCols([]byte(line), -1) <= width {
		return []string{line}
	}
	width = max(width, minWidth)
	indent := len(line) - len(strings.TrimLeft(line, " "))
	pad := strings.Repeat(" ", indent+4)
	var out []string
	cur := ""
	for _, word := range strings.Fields(line) {
		switch {
		case cur == "":
			cur = line[:indent] + word
		case lineCols([]byte(cur+" "+word), -1) <= width:
			cur += " " + word
		default:
			out = append(out, cur)
			cur = pad + word
		}
	}
	return append(out, cur)
}
