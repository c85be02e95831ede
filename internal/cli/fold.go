package cli

import (
	"io"
	"strings"
)

// foldWriter folds each line written to it at its terminal's width
// (foldLine: at blanks, the later lines indented), so that lockwatch's own
// one-line messages among a program's output never break mid-word. Each
// Write must hold whole lines, as fmt.Fprintf of one message does.
type foldWriter struct{ w io.Writer }

// msgs is where run writes its own messages: stderr, folded to its width.
func (a *app) msgs() io.Writer { return foldWriter{a.stderr} }

func (f foldWriter) Write(p []byte) (int, error) {
	width := termWidth(f.w)
	if width <= 0 {
		return f.w.Write(p)
	}
	lines := strings.SplitAfter(string(p), "\n")
	var b strings.Builder
	for _, l := range lines {
		text, nl := strings.CutSuffix(l, "\n")
		b.WriteString(strings.Join(foldLine(text, width), "\n"))
		if nl {
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(f.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}
