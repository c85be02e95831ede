// Package safeout is the one path from lockwatch to a terminal: every byte
// lockwatch writes to its standard output and standard error goes through a
// Writer, which escapes whatever could drive the terminal (C0 and C1
// controls, DEL, invalid UTF-8, bidirectional overrides), so that a name,
// role, argument or error text read from a run can never retitle the
// terminal, move its cursor or hide text, even when the code that printed
// it forgot to escape it.
//
// lockwatch's own control sequences (colours, the status line, the screen
// of watch) pass only when marked by Ctl, with a marker that carries a
// secret of this process: text read from anywhere else cannot carry it,
// so it cannot forge a sequence. The Writer removes the marker.
//
//	w := safeout.NewWriter(os.Stdout)
//	defer w.Flush()
//	fmt.Fprintf(w, "%s holds %s\n", safeout.Ctl("\x1b[1m")+"pid 7"+safeout.Ctl("\x1b[0m"), name)
package safeout

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"strings"
	"unicode/utf8"
)

// marker precedes each escape sequence Ctl marks: a CSI sequence (so that
// width computations count it as no column, as they count the sequence it
// marks) whose parameter is a random number drawn when the process starts.
var marker = func() string {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic("safeout: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("\x1b[%019dz", n)
}()

// Ctl marks the escape sequences in seq as lockwatch's own, so that a
// Writer passes them. seq is lockwatch's constant, never text read from
// elsewhere.
func Ctl(seq string) string {
	return strings.ReplaceAll(seq, "\x1b", marker+"\x1b")
}

// Escape returns s with every control character (newline and tab too), C1
// control, invalid byte and bidirectional override shown as text: \xHH for
// bytes and C0 controls (ESC as \x1b), \uHHHH for C1 controls and
// bidirectional overrides. Other text is left alone.
func Escape(s string) string {
	if clean(s, false) {
		return s
	}
	var b strings.Builder
	appendEscaped(&b, s, false)
	return b.String()
}

// clean reports whether s holds nothing to escape (newlines and tabs
// allowed when text).
func clean(s string, text bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if needsEscape(c) && !(text && (c == '\n' || c == '\t')) {
			return false
		}
	}
	return true
}

// appendEscaped writes s escaped to b; text keeps newlines and tabs.
func appendEscaped(b *strings.Builder, s string, text bool) {
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && n == 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case text && (c == '\n' || c == '\t'):
			b.WriteByte(byte(c))
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(b, `\x%02x`, c)
		case needsEscape(c):
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

// needsEscape reports whether Escape rewrites the valid rune c.
func needsEscape(c rune) bool {
	switch {
	case c < 0x20, c == 0x7f, c >= 0x80 && c <= 0x9f: // C0, DEL, C1
		return true
	case c >= 0x202a && c <= 0x202e, c >= 0x2066 && c <= 0x2069, c == 0x2028, c == 0x2029:
		return true // bidirectional overrides and isolates, line and paragraph separators
	}
	return false
}

// maxSeq bounds a marked escape sequence: longer, it is not one of
// lockwatch's, and is escaped.
const maxSeq = 32

// A Writer escapes what it writes as Escape does, but for newlines, tabs
// and the sequences Ctl marked. A write may end in the middle of a
// character or a marked sequence: those bytes are kept for the next write,
// or for Flush. A Writer is not safe for concurrent use, unless its
// underlying writer is and each write is whole (lines, as lockwatch
// writes): it holds bytes only between writes of a character or sequence
// cut in two.
type Writer struct {
	w     io.Writer
	carry []byte
	out   []byte
}

// NewWriter returns a Writer that writes to w. A Writer given a Writer
// returns it.
func NewWriter(w io.Writer) *Writer {
	if sw, ok := w.(*Writer); ok {
		return sw
	}
	return &Writer{w: w}
}

// Raw returns the writer under w, if w is a Writer: for a child process's
// output, which is its own, and to ask whether it is a terminal.
func Raw(w io.Writer) io.Writer {
	if sw, ok := w.(*Writer); ok {
		return sw.w
	}
	return w
}

// Write writes p escaped. It returns len(p) when the underlying writer
// took all of it.
func (w *Writer) Write(p []byte) (int, error) {
	in := p
	if len(w.carry) > 0 {
		in = append(w.carry, p...)
		w.carry = nil
	} else if plainRun(p) == len(p) {
		// Nothing to escape (a report's JSON, most tables): p as it is,
		// not copied.
		if _, err := w.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	out, rest := w.translate(w.out[:0], in, false)
	if len(rest) > 0 {
		w.carry = append([]byte(nil), rest...)
	}
	w.out = out[:0]
	if len(out) == 0 {
		return len(p), nil
	}
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	if cap(w.out) > 64<<10 {
		w.out = nil // do not keep a large report's buffer
	}
	return len(p), nil
}

// WriteString is Write for a string.
func (w *Writer) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush writes the bytes kept from the last write, escaped: a cut
// character or sequence that was never completed.
func (w *Writer) Flush() error {
	if len(w.carry) == 0 {
		return nil
	}
	out, _ := w.translate(nil, w.carry, true)
	w.carry = nil
	_, err := w.w.Write(out)
	return err
}

// plain holds the bytes a Writer passes as they are: printable ASCII,
// newline and tab.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	t['\n'], t['\t'] = true, true
	return t
}()

// plainRun returns the length of b's leading run of plain bytes, eight
// at a time.
func plainRun(b []byte) int {
	const ones, highs, lows = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	// is sets the high bit of each byte of x equal to c (exactly: no
	// carry crosses a byte).
	is := func(x, c uint64) uint64 {
		y := x ^ c*ones
		return ^((y&lows + lows) | y) & highs
	}
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if x&highs != 0 {
			break // a byte of 0x80 or more
		}
		// Each byte at least 0x20 (x+0x60 sets its high bit) and not 0x7f
		// (x+1 does not), or a newline or a tab.
		if printable := (x + 0x60*ones) & ^(x + ones) & highs; printable|is(x, '\n')|is(x, '\t') != highs {
			break
		}
	}
	for ; i < len(b); i++ {
		if !plain[b[i]] {
			return i
		}
	}
	return len(b)
}

// translate appends in, escaped, to out, and returns what of in's end may
// be the beginning of a character or marked sequence (unless final).
func (w *Writer) translate(out, in []byte, final bool) ([]byte, []byte) {
	for i := 0; i < len(in); {
		c := in[i]
		switch {
		case plain[c]:
			j := i + 1 + plainRun(in[i+1:])
			out = append(out, in[i:j]...)
			i = j
			continue
		case c == 0x1b:
			n, whole := marked(in[i:])
			if n > 0 {
				out = append(out, in[i+len(marker):i+n]...)
				i += n
				continue
			}
			if !whole && !final {
				return out, in[i:]
			}
			out = fmt.Appendf(out, `\x%02x`, c)
			i++
			continue
		case c < 0x20 || c == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			if !final && !utf8.FullRune(in[i:]) {
				return out, in[i:]
			}
			out = fmt.Appendf(out, `\x%02x`, c)
		case needsEscape(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, in[i:i+n]...)
		}
		i += n
	}
	return out, nil
}

// marked returns the length of the marker and the escape sequence it marks
// at the start of b (ESC [ parameters intermediates final, or ESC and one
// byte), or 0; whole is false when b is too short to tell.
func marked(b []byte) (n int, whole bool) {
	m := len(marker)
	if len(b) < m {
		return 0, !bytes.HasPrefix([]byte(marker), b)
	}
	if string(b[:m]) != marker {
		return 0, true
	}
	seq := b[m:]
	if len(seq) < 2 {
		return 0, false
	}
	if seq[0] != 0x1b {
		return 0, true
	}
	if seq[1] != '[' {
		if seq[1] < 0x20 || seq[1] > 0x7e {
			return 0, true
		}
		return m + 2, true
	}
	for j := 2; j < len(seq) && j < maxSeq; j++ {
		switch c := seq[j]; {
		case c >= 0x40 && c <= 0x7e:
			return m + j + 1, true
		case c < 0x20 || c > 0x7e:
			return 0, true
		}
	}
	return 0, len(seq) >= maxSeq
}
