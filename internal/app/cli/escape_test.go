package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/probe"
)

// rawControl returns the offset of the first thing in s a terminal would
// act on (a C0 control but newline and tab, DEL, a C1 control, a
// bidirectional override or separator, a byte that is not UTF-8), or -1.
func rawControl(s string) int {
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && n == 1,
			c < 0x20 && c != '\n' && c != '\t', c == 0x7f, c >= 0x80 && c <= 0x9f,
			c >= 0x202a && c <= 0x202e, c >= 0x2066 && c <= 0x2069, c == 0x2028, c == 0x2029:
			return i
		}
		i += n
	}
	return -1
}

// noRaw fails when output holds anything a terminal would act on.
func noRaw(t *testing.T, what, output string) {
	t.Helper()
	if i := rawControl(output); i >= 0 {
		t.Errorf("%s: raw control byte %q at %d:\n%s", what, output[i:min(i+8, len(output))], i, output)
	}
}

// hostileProgram is the program target under a name that is an escape
// sequence: its command name (comm) and run's PROGRAM carry it.
func hostileProgram(t *testing.T, target string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p\x1b]0;pwn\x07\u009b")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostileRunRoles: "hostile-join" joins the run with a hostile role and
// starts "hostile-idle" (the same hostile program, not joining: no
// LOCKWATCH_DIR), then both wait for stdin to end.
func hostileRunRoles(role string) int {
	switch role {
	case "hostile-idle":
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "hostile-join":
		a, err := probe.Start(probe.Options{Role: "role" + escapes})
		if err != nil {
			fmt.Fprintln(os.Stderr, "error", err)
			return 1
		}
		defer a.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(cleanEnv(), roleEnv+"=hostile-idle")
		cmd.Stdin = os.Stdin
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "error", err)
			return 1
		}
		return 0
	}
	return 2
}

// runUntil runs lockwatch run -- PROGRAM, reads its stderr until a line
// holds want, then ends PROGRAM's stdin, and returns all it wrote.
func runUntil(t *testing.T, want string, env []string, program ...string) string {
	t.Helper()
	lw, _ := bins(t)
	cmd := exec.Command(lw, append([]string{"run", "--"}, program...)...)
	cmd.Env = append(cleanEnv(), env...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(errPipe)
	var said strings.Builder
	found := make(chan bool, 1)
	go func() {
		for {
			line, err := lines.ReadString('\n')
			said.WriteString(line)
			if strings.Contains(line, want) {
				found <- true
				return
			}
			if err != nil {
				found <- false
				return
			}
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("run ended without a line saying %q:\n%s", want, said.String())
		}
	case <-time.After(probablyStillBlocked):
		in.Close()
		t.Fatalf("no line saying %q in %v", want, probablyStillBlocked)
	}
	in.Close()
	rest, _ := io.ReadAll(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s%s", err, said.String(), rest)
	}
	return said.String() + string(rest) + out.String()
}

// TestRunEscapes: run's own lines (nothing joined, a process that has not
// joined, who joined) name processes by their command and role: a name
// that is an escape sequence is printed as text. Before the terminal
// writer, all three wrote it raw.
func TestRunEscapes(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	out := runUntil(t, "no process has joined the run", nil, hostileProgram(t, sh), "-c", "cat >/dev/null; exit 0")
	noRaw(t, "run, nothing joined", out)
	if !strings.Contains(out, `p\x1b]0;pwn\x07\u009b`) {
		t.Errorf("run: %q; want PROGRAM's name escaped", out)
	}
	out = runUntil(t, "has not joined the run", []string{roleEnv + "=hostile-join"}, hostileProgram(t, os.Args[0]), "-test.run=^$")
	noRaw(t, "run, one joined", out)
	if !strings.Contains(out, `(p\x1b]0;pwn\x07\u009b`) || !strings.Contains(out, `joined the run: role\x1b]0;pwned\x07`) {
		t.Errorf("run: %q; want the command and the role escaped", out)
	}
}

// TestPruneEscapes: prune names the runs it removes, or would.
func TestPruneEscapes(t *testing.T) {
	root := privateRoot(t)
	t.Setenv(arena.EnvRoot, root)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	hostileRun(t, root, "n"+escapes, hostile.Spec{Procs: 8, Locks: 8, Waiters: 8, Events: 64, UsedProcs: 1, UsedLocks: 1, OwnerDied: true})
	code, out, errs := lockwatch(t, "prune", "--dry-run", "--all")
	if code != ExitOK || !strings.Contains(out, `n\x1b]0;pwned\x07`) {
		t.Errorf("prune --dry-run: exit %d, %q; want the run named, escaped", code, out+errs)
	}
	noRaw(t, "prune --dry-run", out+errs)
	code, out, errs = lockwatch(t, "prune", "--all")
	noRaw(t, "prune", out+errs)
	if code != ExitOK {
		t.Errorf("prune: exit %d: %s", code, errs)
	}
}

// TestEveryCommandEscapes drives every command, and their errors, with a
// run whose lock names, roles and arguments are escape sequences, with
// hostile files and arguments, and scans everything written.
func TestEveryCommandEscapes(t *testing.T) {
	dir, escaper := startEscaper(t)
	pid := strconv.Itoa(escaper)

	tmp := t.TempDir()
	trace := filepath.Join(tmp, "trace.txt")
	os.WriteFile(trace, []byte("goroutine 1 [chan receive"+escapes+"]:\nmain.f"+escapes+"()\n\t/x"+escapes+".go:1 +0x1\n"), 0o600)
	garbage := filepath.Join(tmp, "garbage")
	os.WriteFile(garbage, []byte("\x1b]0;pwned\x07\x00\xff"+escapes), 0o600)

	for _, args := range [][]string{
		{"attach", "--stuck-after=1h", dir},
		{"attach", "--stuck-after=1h", "-o", "json", dir},
		{"attach", "--stuck-after=1h", pid},
		{"ps"}, {"ps", "--all"}, {"ps", "-o", "json"},
		{"stacks", pid}, {"stacks", "--text", pid}, {"stacks", "-o", "json", pid},
		{"stacks", trace}, {"stacks", garbage}, {"stacks", tmp + "/missing" + escapes},
		{"holders", pid},
		{"attach", dir + escapes}, {"watch", dir + escapes}, {"holders", escapes},
		{"no-such-command" + escapes}, {"attach", "--no-such-flag" + escapes},
		{"--stuck-after", escapes, "attach", dir},
		{"run"}, {"run", "--", tmp + "/missing" + escapes},
		{"help", "attach"}, {"--version"},
	} {
		code, out, errs := lockwatch(t, args...)
		noRaw(t, fmt.Sprintf("%q (exit %d)", args, code), out+errs)
	}

	// watch, until it has drawn the report once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var o, e lockedBuffer
	w := &cancelOn{w: &o, want: `n\x1b]0;pwned`, cancel: cancel}
	Main(ctx, []string{"watch", "--stuck-after=1h", dir}, strings.NewReader(""), w, &e)
	if !strings.Contains(o.String(), `n\x1b]0;pwned`) {
		t.Errorf("watch: %q; want the lock's name escaped", o.String()+e.String())
	}
	noRaw(t, "watch", o.String()+e.String())
}

// cancelOn cancels once what it is written holds want.
type cancelOn struct {
	w      io.Writer
	want   string
	cancel func()
	seen   strings.Builder
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.seen.Write(p)
	if strings.Contains(c.seen.String(), c.want) {
		c.cancel()
	}
	return c.w.Write(p)
}

// TestEscapeSequencesMarked: every escape sequence lockwatch's own code
// writes is marked with safeout.Ctl (else the terminal writer shows it as
// text): a source line of internal/app/cli or report outside tests
// that holds an ESC holds it inside safeout.Ctl(...).
func TestEscapeSequencesMarked(t *testing.T) {
	for _, glob := range []string{"*.go", "../../../report/*.go"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(b), "\n") {
				code, _, _ := strings.Cut(line, "//")
				if strings.Contains(code, `\x1b`) && !strings.Contains(code, "safeout.Ctl(") {
					t.Errorf("%s:%d: an escape sequence not marked with safeout.Ctl: %s", f, i+1, strings.TrimSpace(line))
				}
			}
		}
	}
}
