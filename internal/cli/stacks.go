package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/stackdump"
)

// stacksOutput is the stacks command's JSON document (docs/json.md).
type stacksOutput struct {
	Source string            `json:"source"` // pid N, or the file
	Format string            `json:"format"` // text or proto
	Total  int64             `json:"goroutines"`
	Groups []stackdump.Group `json:"groups"`
	Notes  []string          `json:"notes"`
}

func (a *app) stacksCmd() *cobra.Command {
	var text bool
	c := &cobra.Command{
		Use:   "stacks PID|FILE",
		Short: "Grouped goroutine stacks of a probed process, a traceback file or a pprof goroutine profile",
		Long: `stacks prints goroutines grouped by identical stack, largest group first.
For a PID it asks the process's probe: by default its goroutine profile
(cheap; no goroutine ids or states), with --text its text dump (ids, states,
wait times; stops the process for the whole dump). For a FILE it reads Go
traceback text (a panic, SIGQUIT dump, go test timeout) or a pprof goroutine
profile (protobuf, gzipped or not); the format is detected.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := a.loadStacks(cmd, args[0], text)
			if err != nil {
				return err
			}
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			// Frames, notes and names come from a process or a file:
			// escaped, keeping the layout's newlines and tabs.
			var b strings.Builder
			for _, n := range out.Notes {
				fmt.Fprintf(&b, "note: %s\n", report.Escape(n))
			}
			fmt.Fprintf(&b, "%s: %d goroutines in %d groups (%s)\n\n", report.Escape(out.Source), out.Total, len(out.Groups), report.Escape(out.Format))
			for _, g := range out.Groups {
				var gb strings.Builder
				if err := g.Write(&gb); err != nil {
					return err
				}
				b.WriteString(escapeText(gb.String()))
				b.WriteString("\n")
			}
			_, err = io.WriteString(a.stdout, b.String())
			return err
		},
	}
	c.Flags().BoolVar(&text, "text", false, "for a PID: ask for the text dump (goroutine ids and states; stops the process for the whole dump)")
	return c
}

func (a *app) loadStacks(cmd *cobra.Command, arg string, text bool) (*stacksOutput, error) {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		b, err := readStacksFile(arg)
		if err != nil {
			return nil, err
		}
		return stacksOf(arg, b)
	}
	if _, err := strconv.Atoi(arg); err != nil {
		return nil, usagef("%s is neither a pid nor a readable file", arg)
	}
	t, err := resolve(arg)
	if err != nil {
		return nil, err
	}
	timeout := a.opts.ProbeTimeout
	if text {
		timeout += 10 * time.Second / 10 // a text dump takes longer
	}
	c := &probe.Client{Path: probe.SocketPath(t.dir, t.id), Timeout: max(timeout, 2*time.Second)}
	d, err := c.Goroutines(cmd.Context(), text)
	if err != nil {
		return nil, usagef("pid %d's probe did not answer (%v); 'lockwatch attach %d' still reports from the registry", t.id.PID, err, t.id.PID)
	}
	return stacksOf("pid "+strconv.Itoa(t.id.PID), d.Data)
}

// stacksOf reads a dump, detecting its format: a pprof profile is gzip or
// protobuf (binary), a traceback is text.
func stacksOf(source string, b []byte) (*stacksOutput, error) {
	out := &stacksOutput{Source: source, Groups: []stackdump.Group{}, Notes: []string{}}
	if isProfile(b) {
		p, err := stackdump.ParseProfile(b)
		if err != nil {
			return nil, usagef("%s: not a Go traceback or goroutine profile: %v", source, err)
		}
		out.Format = "proto"
		out.Groups = stackdump.GroupSamples(p.Samples)
	} else {
		s, err := stackdump.Parse(bytes.NewReader(b))
		if s == nil || len(s.Goroutines) == 0 {
			if err == nil {
				err = fmt.Errorf("no goroutine found")
			}
			return nil, usagef("%s: not a Go traceback or goroutine profile: %v", source, oneLine(firstErr(err)))
		}
		if err != nil {
			out.Notes = append(out.Notes, "some lines could not be read: "+oneLine(firstErr(err)))
		}
		out.Format = "text"
		out.Groups = stackdump.GroupGoroutines(s.Goroutines, stackdump.IgnoreArgs)
	}
	for _, g := range out.Groups {
		out.Total += g.Count
	}
	return out, nil
}

// maxStacksFile bounds the file stacks reads: a traceback takes some 700
// bytes a goroutine (64 MiB: some 90,000 goroutines), a goroutine profile
// far less.
const maxStacksFile = 64 << 20

// readStacksFile reads a dump file of at most maxStacksFile bytes.
func readStacksFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStacksFile+1))
	if err != nil {
		return nil, usagef("%v", err)
	}
	if len(b) > maxStacksFile {
		return nil, usagef("%s is larger than the %d MiB lockwatch stacks reads; give it the part you need (for a traceback, the goroutines of interest)", path, maxStacksFile>>20)
	}
	return b, nil
}

func isProfile(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			zr.Close()
			return true
		}
	}
	return !utf8.Valid(b[:min(len(b), 4096)])
}

// firstErr is the first of joined errors, for a one-line message.
func firstErr(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		n := len(j.Unwrap())
		if n > 1 {
			return fmt.Sprintf("%v (and %d more)", j.Unwrap()[0], n-1)
		}
		return j.Unwrap()[0].Error()
	}
	return err.Error()
}
