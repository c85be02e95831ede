package report

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/internal/diag/texttable"
	"github.com/lockwatch/lockwatch/lockstate"
)

// Style says how Write renders.
type Style struct {
	// Color adds ANSI colours (the caller decides: a terminal, no NO_COLOR).
	Color bool
	// AllLocks lists free locks too; by default only held or awaited ones.
	AllLocks bool
	// Brief leaves out the frames of each lock-order edge (its two call
	// sites stay), for a screen that must show the tables too (watch).
	Brief bool
}

// The colours, marked as lockwatch's own (the terminal writer passes
// them, and escapes any other sequence).
var (
	bold   = safeout.Ctl("\x1b[1m")
	red    = safeout.Ctl("\x1b[31m")
	yellow = safeout.Ctl("\x1b[33m")
	green  = safeout.Ctl("\x1b[32m")
	dim    = safeout.Ctl("\x1b[2m")
	reset  = safeout.Ctl("\x1b[0m")
)

func (st Style) paint(code, s string) string {
	if !st.Color || s == "" {
		return s
	}
	return code + s + reset
}

// errWriter remembers the first write error, so that rendering code stays
// readable; Write returns it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// Write renders the report as text: findings, then tables, then stacks.
func (r *Report) Write(w io.Writer, st Style) error {
	e := &errWriter{w: w}
	// Every string from the run or a probe goes through escape.
	e.printf("%s %s, %s\n", st.paint(bold, "lockwatch report:"), escape(r.Run), r.Taken.Format("2006-01-02 15:04:05.000"))
	if len(r.Findings) == 0 {
		e.printf("%s\n", st.paint(green, "no finding: no dead holder, no cycle, no stuck holder"))
	}
	for i := 0; i < len(r.Findings); {
		f := r.Findings[i]
		// Findings of one kind with the same advice and nothing of their
		// own to show (seven stale waiters) are counted, not repeated.
		j := i + 1
		for j < len(r.Findings) && likeFinding(r.Findings[j], f) {
			j++
		}
		c := red
		if !f.Kind.Deadlock() {
			c = yellow
		}
		e.printf("%s %s\n", st.paint(c+bold, strings.ToUpper(escape(string(f.Kind)))), escape(f.Summary))
		if j > i+1 {
			pids := make([]string, 0, min(j-i-1, 10))
			for _, g := range r.Findings[i+1 : min(j, i+11)] {
				pids = append(pids, strconv.Itoa(findingPID(g)))
			}
			if j-i-1 > 10 {
				pids = append(pids, fmt.Sprintf("and %d more", j-i-11))
			}
			e.printf("  and %d more like it: pid %s\n", j-i-1, strings.Join(pids, ", "))
		}
		if f.Doing != "" {
			e.printf("  doing: %s\n", escape(f.Doing))
		}
		e.printf("  next: %s\n", escape(f.Next))
		i = j
		if len(f.Order) > 0 {
			e.writeOrder(&f, st.Brief)
		}
	}
	for _, n := range r.Notes {
		e.printf("%s %s\n", st.paint(yellow, "note:"), escape(n))
	}

	var rows [][]string
	free := 0
	for _, l := range r.Locks {
		if !st.AllLocks && l.State == "free" && l.Waiting == 0 {
			free++
			continue
		}
		holders := l.Holders
		if len(holders) == 0 && l.Holder != nil {
			holders = []Party{*l.Holder}
		}
		if len(holders) == 0 {
			rows = append(rows, []string{escape(l.Name), escape(l.State), "-", "-", "-", "-", "-"})
		}
		for _, h := range holders {
			state := l.State
			if h.Read {
				state += " (read)"
			}
			if h.Inferred != "" {
				state += " (inferred)"
			}
			rows = append(rows, []string{escape(l.Name), escape(state), escape(pidText(h.Host, h.PID)), st.liveness(h.State), gid(h.Goroutine), dur(h.For), where(h.Where)})
		}
	}
	var left []string
	if free > 0 {
		left = append(left, fmt.Sprintf("%d free not shown", free))
	}
	for _, what := range slices.Sorted(maps.Keys(r.Unlisted)) {
		left = append(left, fmt.Sprintf("%d free %s", r.Unlisted[what], escape(plural(what, r.Unlisted[what]))))
	}
	title := "LOCKS"
	if len(left) > 0 {
		title = "LOCKS (" + strings.Join(left, "; ") + ")"
	}
	e.section(st, title, []string{"name", "state", "holder", "liveness", "goroutine", "held for", "acquired at"}, rows)
	if details := lockDetails(r.Locks, st.AllLocks); len(details) > 0 {
		e.section(st, "LOCK DETAILS", []string{"name", "details"}, details)
	}

	rows = rows[:0]
	for _, wr := range r.Waiters {
		lock := wr.Lock
		if wr.Read {
			lock += " (read)"
		}
		rows = append(rows, []string{escape(pidText(wr.Host, wr.PID)), gid(wr.Goroutine), escape(lock), dur(wr.For), where(wr.Where)})
	}
	e.section(st, "WAITERS", []string{"pid", "goroutine", "lock", "waiting for", "where"}, rows)

	rows = rows[:0]
	for _, p := range r.Processes {
		who := p.Role
		if who == "" {
			who = p.Command
		}
		exit := escape(p.Exit)
		if !p.ExitedAt.IsZero() {
			exit += " " + p.ExitedAt.Format("15:04:05.000")
		}
		rows = append(rows, []string{escape(pidText(p.Host, p.PID)), truncate(escape(who), 40), st.liveness(p.State), clock(p.Started), exit})
	}
	e.section(st, "PROCESSES", []string{"pid", "role or command", "state", "started", "exit"}, rows)
	if details := processDetails(r.Processes); len(details) > 0 {
		e.section(st, "PROCESS DETAILS", []string{"pid", "details"}, details)
	}

	if len(r.Events) > 0 {
		rows = rows[:0]
		for _, ev := range r.Events {
			kind := ev.Kind
			if ev.Token != 0 {
				kind += fmt.Sprintf(" #%d", ev.Token) // the fencing token
			}
			rows = append(rows, []string{clock(ev.Time), escape(ev.Lock), escape(kind), escape(pidText(ev.Host, ev.PID)), gid(ev.Goroutine)})
		}
		e.section(st, "RECENT EVENTS", []string{"time", "lock", "event", "pid", "goroutine"}, rows)
	}
	if len(r.Stacks) > 0 {
		e.printf("\n%s\n", st.paint(bold, "STACKS"))
		for _, s := range r.Stacks {
			e.printf("%s\n", st.paint(bold, escape(stackTitle(s))))
			for _, f := range s.Frames {
				e.printf("  %s\n", escape(f.Func))
				if f.File != "" {
					e.printf("  \t%s:%d\n", escape(f.File), f.Line)
				}
			}
		}
	}
	return e.err
}

// lockDetails is a row for each listed lock whose backend gave facts of its
// own for readers and that the locks table shows (free locks only with
// all): the lock's name, then each fact as "name value", joined by commas.
func lockDetails(locks []LockRow, all bool) [][]string {
	var rows [][]string
	for _, l := range locks {
		if !all && l.State == "free" && l.Waiting == 0 {
			continue
		}
		if d := details(l.Facts); d != "" {
			rows = append(rows, []string{escape(l.Name), d})
		}
	}
	return rows
}

// processDetails is a row for each process whose backend gave facts of
// its own for readers: its pid, then the facts.
func processDetails(ps []ProcRow) [][]string {
	var rows [][]string
	for _, p := range ps {
		if d := details(p.Facts); d != "" {
			rows = append(rows, []string{escape(pidText(p.Host, p.PID)), d})
		}
	}
	return rows
}

// details writes facts as "name value", joined by commas, leaving out the
// raw ones; "" when none is left.
func details(fs []Fact) string {
	var parts []string
	for _, f := range fs {
		if !f.Raw {
			parts = append(parts, escape(f.Name+" "+f.Value))
		}
	}
	return strings.Join(parts, ", ")
}

// likeFinding reports whether g says what f says but of another process:
// the same kind, lock and advice, and no "doing" of its own.
func likeFinding(g, f Finding) bool {
	return g.Kind == f.Kind && g.Lock == f.Lock && g.Next == f.Next && g.Doing == "" && f.Doing == "" && findingPID(g) != 0
}

// findingPID is the process a finding is about: its holder, or its (dead)
// waiter.
func findingPID(f Finding) int {
	switch {
	case f.Holder != nil:
		return f.Holder.PID
	case len(f.Waiters) > 0:
		return f.Waiters[0].PID
	}
	return 0
}

func stackTitle(s StackRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", s.PID)
	if s.Host != "" {
		fmt.Fprintf(&b, " on %s", s.Host)
	}
	fmt.Fprintf(&b, ", %s", s.Role)
	if s.Count > 1 {
		fmt.Fprintf(&b, "s (%d goroutines)", s.Count)
	}
	if s.Lock != "" {
		fmt.Fprintf(&b, " of %q", s.Lock)
	}
	if len(s.Goroutines) > 0 && !slices.Equal(s.Goroutines, []int64{lockstate.WholeProcess}) {
		ids := make([]string, 0, min(len(s.Goroutines), 10))
		for _, id := range s.Goroutines[:min(len(s.Goroutines), 10)] {
			ids = append(ids, strconv.FormatInt(id, 10))
		}
		if len(s.Goroutines) > 10 {
			ids = append(ids, "...")
		}
		fmt.Fprintf(&b, ", goroutine %s", strings.Join(ids, ", "))
	}
	if s.State != "" {
		fmt.Fprintf(&b, " [%s]", s.State)
	}
	fmt.Fprintf(&b, " (%s):", s.Source)
	return b.String()
}

func (st Style) liveness(s string) string {
	s = escape(s)
	switch s {
	case "alive":
		return st.paint(green, s)
	case "unknown":
		return st.paint(yellow, s)
	case Exited:
		return st.paint(dim, s)
	}
	return st.paint(red, s)
}

// section writes a titled table; nothing for an empty one but the title.
func (e *errWriter) section(st Style, title string, header []string, rows [][]string) {
	e.printf("\n%s\n", st.paint(bold, title))
	if len(rows) == 0 {
		e.printf("  (none)\n")
		return
	}
	if e.err == nil {
		e.err = texttable.Write(e.w, header, rows)
	}
}

// pidText names a process in a table: its pid, after its host for another
// machine.
func pidText(host string, pid int) string {
	if host != "" {
		return host + "/" + strconv.Itoa(pid)
	}
	return strconv.Itoa(pid)
}

func gid(g int64) string {
	if g == 0 || g == lockstate.WholeProcess {
		return "-"
	}
	return strconv.FormatInt(g, 10)
}

func dur(d Duration) string {
	t := time.Duration(d)
	switch {
	case t == 0:
		return "-"
	case t < time.Second:
		return t.Round(time.Millisecond).String()
	}
	return t.Round(100 * time.Millisecond).String()
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("15:04:05.000")
}

func where(f *FrameJSON) string {
	if f == nil {
		return "-"
	}
	fn := f.Func
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	file := f.File
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		file = file[i+1:]
	}
	if file == "" {
		return escape(fn)
	}
	return escape(fmt.Sprintf("%s %s:%d", fn, file, f.Line))
}

// truncate shortens s to at most n bytes, cutting between runes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// escape is safeout.Escape: every string from a run or a probe goes through
// it before it is printed as text.
func escape(s string) string { return safeout.Escape(s) }

// plural is noun for one, else its English plural (mutex, mutexes; lock,
// locks).
func plural(noun string, n int) string {
	switch {
	case n == 1:
		return noun
	case strings.HasSuffix(noun, "x"), strings.HasSuffix(noun, "s"), strings.HasSuffix(noun, "sh"), strings.HasSuffix(noun, "ch"):
		return noun + "es"
	}
	return noun + "s"
}
