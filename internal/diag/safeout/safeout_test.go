package safeout

import (
	"bytes"
	"strings"
	"testing"
)

// hostile is what a name or role read from a run may hold: an OSC title, a
// bell, a screen clear, an 8-bit CSI, a bidirectional override, a carriage
// return, an invalid byte, and a forged marker (another process's secret
// cannot be known; a guess is escaped like any ESC).
const hostile = "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e\r\xff\x1b[1234567890123456789z\x1b[31m"

// rawControl reports the first byte of s a terminal would act on, or -1.
func rawControl(s string) int {
	for i, c := range s {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f || c >= 0x80 && c <= 0x9f ||
			c >= 0x202a && c <= 0x202e || c >= 0x2066 && c <= 0x2069 || c == 0x2028 || c == 0x2029 || c == 0xfffd && s[i] != 0xef {
			return i
		}
	}
	return -1
}

func TestWriterEscapes(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.WriteString("lock " + hostile + "\tok\n")
	w.Flush()
	if i := rawControl(b.String()); i >= 0 {
		t.Errorf("raw control at %d in %q", i, b.String())
	}
	want := `lock \x1b]0;pwned\x07\x1b[2J\u009b31m\u202e\x0d\xff\x1b[1234567890123456789z\x1b[31m` + "\tok\n"
	if b.String() != want {
		t.Errorf("got %q; want %q", b.String(), want)
	}
}

// Marked sequences pass, unmarked ones do not, and both survive being cut
// anywhere between writes, as do multi-byte characters.
func TestWriterMarkedAndCut(t *testing.T) {
	in := Ctl("\x1b7\x1b[1;23r\x1b8") + "héllo " + Ctl("\x1b[1;31m") + "世界" + hostile + Ctl("\x1b[0m") + "\n"
	want := "\x1b7\x1b[1;23r\x1b8héllo \x1b[1;31m世界" + Escape(hostile) + "\x1b[0m\n"
	for cut := 0; cut <= len(in); cut++ {
		var b bytes.Buffer
		w := NewWriter(&b)
		w.WriteString(in[:cut])
		w.WriteString(in[cut:])
		w.Flush()
		if b.String() != want {
			t.Fatalf("cut at %d: got %q; want %q", cut, b.String(), want)
		}
	}
	// Byte by byte.
	var b bytes.Buffer
	w := NewWriter(&b)
	for i := 0; i < len(in); i++ {
		w.Write([]byte{in[i]})
	}
	w.Flush()
	if b.String() != want {
		t.Errorf("byte by byte: got %q; want %q", b.String(), want)
	}
}

// A write that ends in an unfinished sequence or character is kept until
// Flush, which escapes it.
func TestWriterFlush(t *testing.T) {
	for _, tail := range []string{"\x1b", "\x1b[", marker[:5], marker, marker + "\x1b[1", "\xe4\xb8"} {
		var b bytes.Buffer
		w := NewWriter(&b)
		w.WriteString("a" + tail)
		w.Flush()
		if !strings.HasPrefix(b.String(), "a") || rawControl(b.String()) >= 0 || strings.Contains(b.String(), "\x1b") {
			t.Errorf("%q: got %q", tail, b.String())
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"queue.wlock", "queue.wlock"},
		{"ünïcödé 世界", "ünïcödé 世界"},
		{"\x1b]0;t\x07\x1b[2J", `\x1b]0;t\x07\x1b[2J`},
		{"a\tb\nc\rd\x7f", `a\x09b\x0ac\x0dd\x7f`},
		{"\u009b1m", `\u009b1m`},
		{"\xff\xfe ok", `\xff\xfe ok`},
		{"\u202eevil", `\u202eevil`},
		{"\ufffd", "\ufffd"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzWriter: whatever is written, cut anywhere, nothing a terminal acts on
// comes out but marked sequences, and text without controls comes out as
// it went in.
func FuzzWriter(f *testing.F) {
	f.Add([]byte(hostile), 3)
	f.Add([]byte("plain text\n"), 0)
	f.Add([]byte("\x1b[1234567890123456789z\x1b[1mx"), 7)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		var b bytes.Buffer
		w := NewWriter(&b)
		if cut < 0 || cut > len(in) {
			cut = len(in) / 2
		}
		w.Write(in[:cut])
		w.Write(in[cut:])
		w.Flush()
		out := b.String()
		if strings.Contains(out, marker) {
			t.Fatalf("the marker leaked: %q", out)
		}
		// Only marked sequences may put an ESC out; the input holds none
		// (the fuzzer cannot know the marker).
		if i := rawControl(out); i >= 0 {
			t.Fatalf("raw control at %d in %q (from %q)", i, out, in)
		}
		if clean(string(in), true) && out != string(in) {
			t.Fatalf("clean text changed: %q -> %q", in, out)
		}
	})
}

// plainRun stops at the first byte the table does not pass, wherever it
// is in a word of eight, for every byte value.
func TestPlainRun(t *testing.T) {
	base := []byte("0123456789abcdef\n  \"x\": 1,\n\tyz~ 0123456789abcdef")
	if got := plainRun(base); got != len(base) {
		t.Fatalf("plainRun(%q) = %d; want %d", base, got, len(base))
	}
	for c := range 256 {
		for at := range len(base) {
			b := append([]byte(nil), base...)
			b[at] = byte(c)
			want := len(b)
			if !plain[c] {
				want = at
			}
			if got := plainRun(b); got != want {
				t.Fatalf("plainRun with %#x at %d = %d; want %d", c, at, got, want)
			}
		}
	}
}
