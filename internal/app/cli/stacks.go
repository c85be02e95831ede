package cli

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/stackdump"
)

// StacksSchema names the stacks command's JSON format (docs/json.md).
const StacksSchema = "lockwatch.stacks/v1"

// maxStacksInput bounds what stacks reads from a file or stdin: a dump of
// 100,000 goroutines is some 50 MiB of text; a profile is far smaller.
const maxStacksInput = 64 << 20

// probePackage is the prefix of the functions of lockwatch's own probe,
// whose goroutines (its control socket, its signal handler) stacks hides
// unless --all.
const probePackage = "github.com/lockwatch/lockwatch/probe."

// stacksOutput is the stacks command's JSON document (docs/json.md).
type stacksOutput struct {
	Schema string       `json:"schema"`
	Source string       `json:"source"` // pid N, the file, or stdin
	Format string       `json:"format"` // text or proto
	Dumps  []stacksDump `json:"dumps"`
	Notes  []string     `json:"notes"`
}

// runtimeDeadlock is the reason of the dump the Go runtime makes when it
// finds every goroutine blocked.
const runtimeDeadlock = "all goroutines are asleep - deadlock!"

// verdict is stacks's exit code: ExitDeadlock when a dump is the runtime's
// deadlock.
func (o *stacksOutput) verdict() int {
	for _, d := range o.Dumps {
		if strings.Contains(d.Reason, runtimeDeadlock) {
			return ExitDeadlock
		}
	}
	return ExitOK
}

// stacksDump is one dump of the input: a file may hold several.
type stacksDump struct {
	// Reason is the panic, fatal error or signal that made the dump.
	Reason string `json:"reason,omitempty"`
	// Cut: the input ends inside this dump; goroutines after the cut are
	// missing.
	Cut        bool          `json:"cut,omitempty"`
	Goroutines int64         `json:"goroutines"` // shown, in Groups
	Hidden     int64         `json:"hidden"`     // goroutines of lockwatch's probe, not in Groups (--all shows them)
	Groups     []stacksGroup `json:"groups"`
}

// stacksGroup is goroutines with the same stack.
type stacksGroup struct {
	Count     int64             `json:"count"`
	States    []stacksState     `json:"states"`           // empty for a profile
	MaxWaitMS int64             `json:"max_wait_ms"`      // the longest wait; the runtime counts whole minutes
	IDs       []int64           `json:"ids"`              // empty for a profile
	Labels    map[string]string `json:"labels,omitempty"` // pprof labels all of them have (lockwatch.wait: the lock waited for)
	Frames    []stacksFrame     `json:"frames"`           // innermost first
	Elided    *stacksElided     `json:"elided,omitempty"` // frames the runtime left out
	CreatedBy *stacksFrame      `json:"created_by,omitempty"`
}

type stacksState struct {
	State string `json:"state"`
	Count int    `json:"count"`
}

type stacksFrame struct {
	Func string `json:"func"`
	Args string `json:"args,omitempty"` // as printed; "*" where the group's goroutines differ
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

type stacksElided struct {
	At    int `json:"at"`    // before frames[at]
	Count int `json:"count"` // 0: the runtime did not say how many
}

func (a *app) stacksCmd() *cobra.Command {
	var text, all bool
	c := &cobra.Command{
		Use:   "stacks [PID|FILE|-]",
		Short: "Grouped goroutine stacks of a probed process, a traceback file or a pprof goroutine profile",
		Long: `stacks prints goroutines grouped by identical stack, largest group first.
For a PID it asks the process's probe: by default its goroutine profile
(cheap; no goroutine ids or states), with --text its text dump (ids, states,
wait times; stops the process for the whole dump). For a FILE, or - or no
argument for standard input, it reads Go traceback text (a panic, a SIGQUIT
dump, a go test timeout, with or without a timestamp before every line) or a
pprof goroutine profile (protobuf, gzipped or not); the format is detected.

The panic or fatal error that made a dump comes first. Several dumps in one
input are shown apart; a dump the input cuts short says so. The goroutines
of lockwatch's own probe are left out unless --all. A goroutine waiting for
a lockwatch lock (lockreg, or a drop-in mutex) shows 'waiting for lock'.

Exit status 3 when a dump is the Go runtime's own deadlock verdict ("fatal
error: all goroutines are asleep - deadlock!"), else 0.`,
		Example: `  lockwatch stacks 4242                 # a probed process's goroutines
  lockwatch stacks --text 4242          # with ids, states and wait times
  go test -timeout 10s 2>&1 | lockwatch stacks
  kubectl logs --timestamps POD | lockwatch stacks -
  lockwatch stacks -o json crash.txt`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := "-"
			if len(args) == 1 {
				arg = args[0]
			} else if f, ok := a.stdin.(*os.File); ok && isTerminal(f) {
				return usagef("stacks: wants a PID or a FILE, or pipe a dump in ('lockwatch stacks --help')")
			}
			out, err := a.loadStacks(cmd, arg, text, all)
			if err != nil {
				return err
			}
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(out)
			} else {
				err = a.stacksText(out)
			}
			if err != nil {
				return err
			}
			return exitCode(out.verdict())
		},
	}
	c.Flags().BoolVar(&text, "text", false, "for a PID: ask for the text dump (goroutine ids and states; stops the process for the whole dump)")
	c.Flags().BoolVar(&all, "all", false, "show the goroutines of lockwatch's own probe too")
	return c
}

// stacksText writes out as text, fitting the terminal's width: the notes
// and the lines about each dump folded, the stacks cut with a mark.
func (a *app) stacksText(out *stacksOutput) error {
	width := termWidth(a.stdout)
	var raw strings.Builder
	say := func(format string, args ...any) {
		for _, l := range foldLine(fmt.Sprintf(format, args...), width) {
			fmt.Fprintln(&raw, l)
		}
	}
	for _, n := range out.Notes {
		say("note: %s", n)
	}
	for i, d := range out.Dumps {
		name := out.Source
		if len(out.Dumps) > 1 {
			name = fmt.Sprintf("%s, dump %d of %d", out.Source, i+1, len(out.Dumps))
		}
		if d.Reason != "" {
			say("%s: %s", name, d.Reason)
		}
		line := fmt.Sprintf("%s: %s in %s (%s)", name, plural(int(d.Goroutines), "goroutine"), plural(len(d.Groups), "group"), out.Format)
		if d.Hidden > 0 {
			line += fmt.Sprintf("; %s of lockwatch's probe not shown (--all shows them)", plural(int(d.Hidden), "goroutine"))
		}
		say("%s", line)
		if d.Cut {
			say("note: the input ends inside this dump (cut mid-line or after a function): goroutines after the cut are missing")
		}
		fmt.Fprintln(&raw)
		for _, g := range d.Groups {
			writeStacksGroup(&raw, g)
			fmt.Fprintln(&raw)
		}
	}
	// Frames, notes and names come from a process or a file: escaped,
	// keeping the layout's newlines and tabs.
	w := fitWidth(a.stdout, width)
	io.WriteString(w, escapeText(raw.String()))
	return w.Flush()
}

// writeStacksGroup renders a group in the shape of a Go traceback.
func writeStacksGroup(w io.Writer, g stacksGroup) {
	fmt.Fprint(w, plural(int(g.Count), "goroutine"))
	if len(g.States) == 1 {
		fmt.Fprintf(w, " [%s]", g.States[0].State) // all of them in it: no count to repeat
	}
	for i, s := range g.States {
		if len(g.States) == 1 {
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(w, "%s%s %d", sep, s.State, s.Count)
	}
	if g.MaxWaitMS > 0 {
		fmt.Fprintf(w, "; longest wait %v", time.Duration(g.MaxWaitMS)*time.Millisecond)
	}
	fmt.Fprintln(w)
	if len(g.IDs) > 0 {
		ids := make([]string, 0, 20)
		for _, id := range g.IDs[:min(len(g.IDs), 20)] {
			ids = append(ids, strconv.FormatInt(id, 10))
		}
		more := ""
		if len(g.IDs) > 20 {
			more = fmt.Sprintf(" and %d more", len(g.IDs)-20)
		}
		fmt.Fprintf(w, "ids: %s%s\n", strings.Join(ids, ", "), more)
	}
	if lock, ok := g.Labels[lockWaitLabel]; ok {
		fmt.Fprintf(w, "waiting for lock %q\n", lock)
	}
	if others := labelList(g.Labels); others != "" {
		fmt.Fprintf(w, "labels: %s\n", others)
	}
	frame := func(f stacksFrame) {
		if f.File != "" {
			fmt.Fprintf(w, "\t%s:%d\n", f.File, f.Line)
		}
	}
	for i, f := range g.Frames {
		if g.Elided != nil && g.Elided.At == i {
			writeElided(w, g.Elided)
		}
		fmt.Fprintf(w, "%s(%s)\n", f.Func, f.Args)
		frame(f)
	}
	if g.Elided != nil && g.Elided.At >= len(g.Frames) {
		writeElided(w, g.Elided)
	}
	if g.CreatedBy != nil {
		fmt.Fprintf(w, "created by %s\n", g.CreatedBy.Func)
		frame(*g.CreatedBy)
	}
}

// lockWaitLabel is the pprof label lockreg gives a goroutine waiting for a
// lock: its value is the lock's name.
const lockWaitLabel = "lockwatch.wait"

// labelList is "k=v, k2=v2" of the labels other than lockWaitLabel, in key
// order.
func labelList(labels map[string]string) string {
	var keys []string
	for k := range labels {
		if k != lockWaitLabel {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ", ")
}

func writeElided(w io.Writer, e *stacksElided) {
	if e.Count > 0 {
		fmt.Fprintf(w, "...%d frames elided...\n", e.Count)
	} else {
		fmt.Fprintln(w, "...additional frames elided...")
	}
}

func (a *app) loadStacks(cmd *cobra.Command, arg string, text, all bool) (*stacksOutput, error) {
	if arg == "-" {
		return stacksFrom("stdin", a.stdin, all)
	}
	if fi, err := os.Stat(arg); err == nil {
		if fi.Mode().IsRegular() && goproc.IsCore(arg) {
			return a.coreStacks(cmd.Context(), arg, all)
		}
		if fi.IsDir() {
			return nil, usagef("%s is a directory: want a PID, a dump file, or - for standard input", arg)
		}
		// Any file but a directory: a regular file, /dev/stdin, a FIFO.
		f, err := os.Open(arg)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return stacksFrom(arg, f, all)
	}
	if _, err := strconv.Atoi(arg); err != nil {
		return nil, usagef("%s is neither a pid nor a readable file; 'lockwatch stacks --help' says what it reads", arg)
	}
	t, err := resolve(arg)
	var np *noProbeError
	if errors.As(err, &np) {
		return a.memoryStacks(cmd.Context(), np, all)
	}
	if err != nil {
		return nil, err
	}
	timeout := a.opts.ProbeTimeout
	if text {
		timeout += time.Second // a text dump takes longer
	}
	c := &probeclient.Client{Path: probeclient.SocketPath(t.dir, t.id), Timeout: max(timeout, 2*time.Second)}
	d, err := c.Goroutines(cmd.Context(), text)
	if err != nil {
		return nil, usagef("pid %d's probe did not answer (%v); 'lockwatch attach %d' still reports from the registry", t.id.PID, err, t.id.PID)
	}
	source := "pid " + strconv.Itoa(t.id.PID)
	if text && !isProfile(d.Data) {
		// A text dump has goroutine ids but no pprof labels: the locks
		// its goroutines wait for come from the run's waiter records
		// and the probe's drop-in mutexes, by goroutine id.
		return stacksOfText(source, bytes.NewReader(d.Data), all, waitsOf(cmd.Context(), t, c))
	}
	return stacksOf(source, d.Data, all)
}

// waitsOf maps the goroutines of t's process that wait for a lock to the
// lock's name: lockreg's waiter records of the run, and the drop-in
// mutexes its probe lists. What cannot be read is left out: the stacks are
// shown without it.
func waitsOf(ctx context.Context, t target, c *probeclient.Client) map[int64]string {
	waits := map[int64]string{}
	if s, err := arena.ReadSnapshot(t.dir); err == nil {
		for _, w := range s.Waiters {
			if w.PID == t.id.PID && w.Start == t.id.Start {
				waits[w.Goroutine] = w.LockName
			}
		}
	}
	if v, err := c.Mutexes(ctx); err == nil {
		for _, m := range v.Mutexes {
			for _, w := range m.Waiters {
				waits[w.Goroutine] = m.Name
			}
		}
	}
	return waits
}

// stacksFrom reads a dump from r: a profile (binary) is read whole, up to
// maxStacksInput; a traceback is parsed as it streams in, so that a long
// log piped in is never held in memory, only the goroutines read from it.
func stacksFrom(name string, r io.Reader, all bool) (*stacksOutput, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, err := br.Peek(4096)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, usagef("cannot read %s: %v", name, err)
	}
	if !isProfile(head) {
		return stacksOfText(name, br, all, nil)
	}
	// A profile, gzipped or not, is at most stackdump.MaxProfileSize: no
	// more is read.
	b, err := io.ReadAll(io.LimitReader(br, stackdump.MaxProfileSize+1))
	if err != nil {
		return nil, usagef("cannot read %s: %v", name, err)
	}
	if len(b) > stackdump.MaxProfileSize {
		return nil, usagef("%s is binary and over %d MiB: not a goroutine profile stacks reads", name, stackdump.MaxProfileSize>>20)
	}
	return stacksOf(name, b, all)
}

// stacksOf reads a dump, detecting its format: a pprof profile is gzip or
// protobuf (binary), a traceback is text.
func stacksOf(source string, b []byte, all bool) (*stacksOutput, error) {
	out := &stacksOutput{Schema: StacksSchema, Source: source, Dumps: []stacksDump{}, Notes: []string{}}
	if isProfile(b) {
		p, err := stackdump.ParseProfile(b)
		if err != nil {
			return nil, usagef("%s: not a Go traceback or goroutine profile: %v", source, err)
		}
		out.Format = "proto"
		out.Dumps = append(out.Dumps, dumpOf(out.capGroups(stackdump.GroupSamples(p.Samples)), all))
		return out, nil
	}
	return stacksOfText(source, bytes.NewReader(b), all, nil)
}

// stacksOfText reads Go traceback text; waits names the lock each waiting
// goroutine waits for (by goroutine id), shown as its lockwatch.wait label.
func stacksOfText(source string, r io.Reader, all bool, waits map[int64]string) (*stacksOutput, error) {
	out := &stacksOutput{Schema: StacksSchema, Source: source, Format: "text", Dumps: []stacksDump{}, Notes: []string{}}
	// Streamed, and bounded: what is read past maxStacksInput is dropped.
	lr := &io.LimitedReader{R: r, N: maxStacksInput}
	dumps, err := stackdump.ParseDumps(lr)
	if lr.N == 0 {
		if n, _ := r.Read(make([]byte, 1)); n > 0 {
			out.Notes = append(out.Notes, fmt.Sprintf("only the first %d MiB of the input were read", maxStacksInput>>20))
		}
	}
	found := false
	for _, d := range dumps {
		found = found || len(d.Goroutines) > 0
	}
	if !found {
		if err == nil {
			err = fmt.Errorf("no goroutine found")
		}
		return nil, usagef("%s: not a Go traceback or goroutine profile: %v", source, oneLine(firstErr(err)))
	}
	if err != nil {
		out.Notes = append(out.Notes, "some lines could not be read: "+oneLine(firstErr(err)))
	}
	if len(dumps) > 1 {
		out.Notes = append(out.Notes, fmt.Sprintf("the input holds %d dumps, shown apart", len(dumps)))
	}
	for _, d := range dumps {
		if len(d.Goroutines) == 0 {
			continue
		}
		if d.Dropped > 0 {
			out.Notes = append(out.Notes, fmt.Sprintf("%s past the first %d were counted, not kept: more than lockwatch keeps of one input (damaged or hostile?)",
				plural(d.Dropped, "goroutine"), len(d.Goroutines)))
		}
		if d.LongLines > 0 {
			out.Notes = append(out.Notes, fmt.Sprintf("%s over 64 KiB kept only its start and end (marked ...[N bytes cut]...)", plural(d.LongLines, "line")))
		}
		for i := range d.Goroutines {
			g := &d.Goroutines[i]
			if lock, ok := waits[g.ID]; ok {
				if g.Labels == nil {
					g.Labels = map[string]string{}
				}
				g.Labels[lockWaitLabel] = lock
			}
		}
		sd := dumpOf(out.capGroups(stackdump.GroupGoroutines(d.Goroutines, stackdump.IgnoreArgs)), all)
		sd.Reason, sd.Cut = d.Reason, d.Cut
		out.Dumps = append(out.Dumps, sd)
	}
	return out, nil
}

// maxGroups bounds the groups stacks shows of one dump, the largest
// first: a dump of goroutines that do not group (every stack its own, as a
// hostile one is made) would otherwise print one group per goroutine.
const maxGroups = 1 << 14

// capGroups keeps the first maxGroups groups (the largest), and says in a
// note how many were left out.
func (out *stacksOutput) capGroups(groups []stackdump.Group) []stackdump.Group {
	if len(groups) <= maxGroups {
		return groups
	}
	n := 0
	for _, g := range groups[maxGroups:] {
		n += int(g.Count)
	}
	out.Notes = append(out.Notes, fmt.Sprintf("only the %d largest groups are shown: %d more groups of %s were left out", maxGroups, len(groups)-maxGroups, plural(n, "goroutine")))
	return groups[:maxGroups:maxGroups]
}

// dumpOf converts groups, leaving out those of lockwatch's probe unless all.
func dumpOf(groups []stackdump.Group, all bool) stacksDump {
	d := stacksDump{Groups: []stacksGroup{}}
	for _, g := range groups {
		if !all && ofProbe(g) {
			d.Hidden += g.Count
			continue
		}
		d.Goroutines += g.Count
		sg := stacksGroup{Count: g.Count, States: []stacksState{}, IDs: g.IDs, Labels: g.Labels, Frames: []stacksFrame{},
			MaxWaitMS: g.MaxWait.Milliseconds()}
		if sg.IDs == nil {
			sg.IDs = []int64{}
		}
		for _, s := range g.States {
			sg.States = append(sg.States, stacksState(s))
		}
		for _, f := range g.Frames {
			sg.Frames = append(sg.Frames, stacksFrame{Func: f.Func, Args: f.Args, File: f.File, Line: f.Line})
		}
		if g.Elided != nil {
			sg.Elided = &stacksElided{At: g.Elided.At, Count: g.Elided.Count}
		}
		if g.CreatedBy != nil {
			sg.CreatedBy = &stacksFrame{Func: g.CreatedBy.Func, File: g.CreatedBy.File, Line: g.CreatedBy.Line}
		}
		d.Groups = append(d.Groups, sg)
	}
	return d
}

// ofProbe reports whether a group is lockwatch's probe's own: a frame of
// its stack, or the go statement that started it, is in the probe package.
func ofProbe(g stackdump.Group) bool {
	if g.CreatedBy != nil && strings.HasPrefix(g.CreatedBy.Func, probePackage) {
		return true
	}
	for _, f := range g.Frames {
		if strings.HasPrefix(f.Func, probePackage) {
			return true
		}
	}
	return false
}

// isProfile tells a pprof goroutine profile (gzip, or raw protobuf) from
// traceback text by its first bytes: a gzip stream by its magic; protobuf
// by its control bytes (tags, lengths and varints below 0x20), of which
// text has none but tabs, line ends and the escapes of a coloured log. A
// traceback with bytes that are not UTF-8 (a panic message of raw bytes)
// is still text.
func isProfile(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			zr.Close()
			return true
		}
	}
	n := min(len(b), 4096)
	controls := 0
	for _, c := range b[:n] {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' && c != 0x1b {
			controls++
		}
	}
	// A profile's first 4 KiB hold hundreds; a stray one in text (a NUL
	// in a panic message) must not make it binary.
	return n > 0 && controls*64 > n
}

// firstErr is the first of joined errors, for a one-line message.
func firstErr(err error) string {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && len(j.Unwrap()) > 0 {
		n := len(j.Unwrap())
		if n > 1 {
			return fmt.Sprintf("%v (and %d more)", j.Unwrap()[0], n-1)
		}
		return j.Unwrap()[0].Error()
	}
	return err.Error()
}

// plural is "1 goroutine", "2 goroutines", "0 processes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return strconv.Itoa(n) + " " + noun + "es"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
