package cli

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
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

// checkEnvRoot refuses a $LOCKWATCH_ROOT that lockwatch will not use: one
// that is not a directory, is a symbolic link, or is not private to this
// user. ps and prune would otherwise list nothing in it without a word, and
// run would call it a run directory. A missing one is fine: run makes it.
func checkEnvRoot() error {
	root := os.Getenv(arena.EnvRoot)
	if root == "" {
		return nil
	}
	fi, err := os.Lstat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return usagef("%s=%s: %v", arena.EnvRoot, root, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return usagef("%s=%s is a symbolic link: name the directory itself, or unset %s", arena.EnvRoot, root, arena.EnvRoot)
	case !fi.IsDir():
		return usagef("%s=%s is not a directory: name a directory for lockwatch's runs, or unset %s", arena.EnvRoot, root, arena.EnvRoot)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return usagef("%s=%s belongs to uid %d, not to you: name a directory of your own, or unset %s", arena.EnvRoot, root, st.Uid, arena.EnvRoot)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return usagef("%s=%s is open to other users (mode %04o), so lockwatch keeps no runs in it: chmod 0700 it, or unset %s",
			arena.EnvRoot, root, perm, arena.EnvRoot)
	}
	return nil
}
