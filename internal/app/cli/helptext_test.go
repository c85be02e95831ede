package cli

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// helpWidth is the width lockwatch's help text is wrapped to; a line that
// could have taken the next line's first word and still ended before
// helpRagged columns has a line break too many.
const (
	helpWidth  = 80
	helpRagged = 70
)

// TestHelpTextWrapped: every command's description, as 'lockwatch CMD
// --help' prints it (with what the etcd and PostgreSQL sources add), is
// wrapped: no line longer than helpWidth (a line break missing, as one was
// before "When another user" in ps's), no line that stops far short with
// the sentence going on below (one too many).
func TestHelpTextWrapped(t *testing.T) {
	paths := [][]string{nil}
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			p := append(append([]string(nil), path...), s.Name())
			paths = append(paths, p)
			walk(s, p)
		}
	}
	walk((&app{}).root(), nil)
	if len(paths) < 9 {
		t.Fatalf("found %d commands: %v; want lockwatch and its 8 commands at least", len(paths), paths)
	}
	for _, p := range paths {
		name := strings.TrimSpace("lockwatch " + strings.Join(p, " "))
		code, stdout, stderr := lockwatch(t, append(p, "--help")...)
		desc, _, ok := strings.Cut(stdout, "\nUsage:\n")
		if code != ExitOK || !ok {
			t.Errorf("%s --help: exit %d, no Usage section: %s%s", name, code, stdout, stderr)
			continue
		}
		lines := strings.Split(desc, "\n")
		for i, l := range lines {
			if n := utf8.RuneCountInString(l); n > helpWidth {
				t.Errorf("%s --help: line of %d columns (more than %d):\n%s", name, n, helpWidth, l)
			}
			if i+1 == len(lines) {
				continue
			}
			next := lines[i+1]
			if strings.TrimSpace(l) == "" || strings.TrimSpace(next) == "" || strings.HasPrefix(next, " ") {
				continue
			}
			if word, _, _ := strings.Cut(next, " "); utf8.RuneCountInString(l)+1+utf8.RuneCountInString(word) <= helpRagged {
				t.Errorf("%s --help: a line broken early (%q would fit on it):\n%s\n%s", name, word, l, next)
			}
		}
	}
}
