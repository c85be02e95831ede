package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/report"
)

// joinGrace is how long a process of PROGRAM's process group may run
// before run says it has not joined the run: short enough that the user
// hears it within a second, long enough for a Go program to reach
// probe.Start (a few milliseconds) on a loaded machine.
const joinGrace = 750 * time.Millisecond

// After joinSlowAfter, the process group is looked at every joinSlowEvery.
const (
	joinSlowAfter = 5 * time.Second
	joinSlowEvery = 5 * time.Second
)

// joinCheck tells, once each, when PROGRAM or a process it started has not
// joined the run: lockwatch cannot see the locks of a process that does not
// run the probe, and "no deadlock" must not be mistaken for "watched".
type joinCheck struct {
	w       io.Writer
	pgid    int    // PROGRAM's process group
	program string // PROGRAM as given
	seen    map[proc.Identity]time.Time
	told    map[proc.Identity]bool
	none    bool // "nothing joined" said
	begun   time.Time
	next    time.Time
}

func newJoinCheck(w io.Writer, pgid int, program string) *joinCheck {
	return &joinCheck{w: w, pgid: pgid, program: program, seen: make(map[proc.Identity]time.Time), told: make(map[proc.Identity]bool),
		begun: time.Now(), next: time.Now().Add(joinGrace)}
}

// due is how long until the next check.
func (j *joinCheck) due() time.Duration { return time.Until(j.next) }

// check looks at the process group against the processes that joined the
// run, and says what has not joined. Called from run's loop; it returns
// whether it wrote a line.
func (j *joinCheck) check(joined []report.ProcRow) bool {
	now := time.Now()
	if now.Before(j.next) {
		return false
	}
	// Often at first, when processes start; then every few seconds: each
	// check reads /proc/PID/stat of every process of the machine.
	j.next = now.Add(joinGrace / 3)
	if now.Sub(j.begun) > joinSlowAfter {
		j.next = now.Add(joinSlowEvery)
	}
	in := make(map[proc.Identity]bool)
	parents := make(map[int]bool)
	for _, p := range joined {
		in[proc.Identity{PID: p.PID, Start: p.Start}] = true
	}
	members := groupMembers(j.pgid)
	for _, m := range members {
		if in[m.Identity()] {
			parents[m.PPID] = true
		}
	}
	wrote := false
	var late []proc.Stat
	for _, m := range members {
		id := m.Identity()
		first, ok := j.seen[id]
		if !ok {
			// Seen at the first check: it may have run since PROGRAM
			// started; later, since the check before.
			first = j.begun
			if len(j.seen) > 0 || now.Sub(j.begun) > 2*joinGrace {
				first = now.Add(-joinGrace / 3)
			}
			j.seen[id] = first
		}
		if m.State == 'T' || m.State == 't' {
			// Stopped (SIGSTOP, a debugger): it cannot join now; its
			// grace starts again when it runs.
			j.seen[id] = now
			continue
		}
		// A launcher (a shell, go run, make) whose child joined is not
		// expected to join itself.
		if in[id] || parents[m.PID] || j.told[id] || m.State == 'Z' || now.Sub(first) < joinGrace {
			continue
		}
		late = append(late, m)
	}
	if len(joined) == 0 && !j.none && len(late) > 0 {
		j.none = true
		fmt.Fprintf(j.w, "lockwatch: no process has joined the run after %v: %s (pid %d) does not run lockwatch's probe, so none of its locks can be seen and no deadlock can be found; a Go program joins with probe.Start (github.com/lockwatch/lockwatch/probe). Still watching: a process that joins later is seen.\n",
			now.Sub(j.begun).Round(100*time.Millisecond), j.program, j.pgid)
		for _, m := range late {
			j.told[m.Identity()] = true
		}
		return true
	}
	if len(joined) == 0 {
		return false
	}
	for _, m := range late {
		j.told[m.Identity()] = true
		fmt.Fprintf(j.w, "lockwatch: pid %d (%s) has not joined the run: its locks are not seen (it does not run lockwatch's probe, or cleared LOCKWATCH_DIR)\n", m.PID, m.Comm)
		wrote = true
	}
	return wrote
}

// groupMembers lists the processes of process group pgid.
func groupMembers(pgid int) []proc.Stat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc.Stat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err == nil && st.PGID == pgid {
			out = append(out, st)
		}
	}
	return out
}

// joinedLine says who joined the run, for its final report: "3 processes
// joined the run: main, 2 worker".
func joinedLine(procs []report.ProcRow) string {
	if len(procs) == 0 {
		return "no process joined the run: nothing was watched (PROGRAM does not run lockwatch's probe; a Go program joins with probe.Start)"
	}
	var names []string
	count := make(map[string]int)
	for _, p := range procs {
		who := p.Role
		if who == "" {
			who = p.Command
		}
		if who == "" {
			who = "pid " + strconv.Itoa(p.PID)
		}
		if count[who] == 0 {
			names = append(names, who)
		}
		count[who]++
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n
		if count[n] > 1 {
			parts[i] = fmt.Sprintf("%d %s", count[n], n)
		}
	}
	verb := "processes joined"
	if len(procs) == 1 {
		verb = "process joined"
	}
	return fmt.Sprintf("%d %s the run: %s", len(procs), verb, strings.Join(parts, ", "))
}

// findingsPrint tells reports with the same findings apart from new ones:
// each finding's key (kind, lock, holder, loop) and its waiters, so that a
// finding that gains a waiter is a new picture, reported again.
func findingsPrint(r *report.Report) string {
	var b strings.Builder
	for i := range r.Findings {
		f := &r.Findings[i]
		b.WriteString(f.Key())
		ws := make([]string, 0, len(f.Waiters))
		for _, w := range f.Waiters {
			ws = append(ws, fmt.Sprintf("%s/%d.%d", w.Host, w.PID, w.Goroutine))
		}
		slices.Sort(ws)
		b.WriteString("|waiters:" + strings.Join(ws, ","))
		b.WriteByte(';')
	}
	return b.String()
}

// settler reports a deadlock only once the run has settled: the same
// findings (holders and waiters) in two readings in a row, and, for a lock
// whose holder died while no goroutine waits for it yet, lonelyWait more.
// A holder's death is seen within a millisecond; the goroutines that go on
// to wait for its lock (a writer that runs out of input, a main that sends
// STOP) come after it, and a report made at the first reading would miss
// them (and, with --on-deadlock=kill, kill them before they are seen).
type settler struct {
	pending string    // the findings of the last reading with a deadlock
	since   time.Time // when pending was first read
	shown   string    // the findings last reported
	now     func() time.Time
}

// lonelyWait is how long a dead holder nobody waits for is watched before
// it is reported: long enough for the goroutines that will wait for its
// lock to get there on a loaded machine.
const lonelyWait = 2 * time.Second

// ready says whether r, a reading with a deadlock, is to be reported now.
func (s *settler) ready(r *report.Report) bool {
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	fp := findingsPrint(r)
	if fp != s.pending {
		s.pending, s.since = fp, now
		return false
	}
	if fp == s.shown {
		return false
	}
	if lonely(r) && now.Sub(s.since) < lonelyWait {
		return false
	}
	s.shown = fp
	return true
}

// lonely reports whether every deadlock finding of r is a lock nobody
// waits for.
func lonely(r *report.Report) bool {
	for i := range r.Findings {
		if f := &r.Findings[i]; f.Kind.Deadlock() && len(f.Waiters) > 0 {
			return false
		}
	}
	return true
}

// clear forgets a pending reading: the last reading had no deadlock.
func (s *settler) clear() { s.pending = "" }

// statusLine is run's live line at the bottom of a terminal. The rows above
// it are made the terminal's scrolling region (as apt draws its progress
// bar), so that PROGRAM's output, and lockwatch's own reports, scroll above
// it and never run into it; each redraw saves the cursor, writes the bottom
// row and restores the cursor, in one write(2), which the terminal driver
// keeps whole against PROGRAM's writes.
type statusLine struct {
	w          io.Writer
	fd         int
	on         bool
	rows, cols int
	started    time.Time
	colour     bool
	last       string
}

// newStatusLine sets up the status line on w if it is a terminal of at
// least 3 rows.
func newStatusLine(w io.Writer, started time.Time) *statusLine {
	s := &statusLine{w: w, started: started}
	f, ok := safeout.Raw(w).(*os.File)
	if !ok || !isTerminal(f) || os.Getenv("TERM") == "dumb" {
		return s // a dumb terminal moves no cursor: no status line
	}
	s.fd = int(f.Fd())
	s.colour = colour(w)
	s.on = true
	s.setup(true)
	return s
}

// setup reads the terminal's size and sets the scrolling region; first
// makes room for the status row by a new line.
func (s *statusLine) setup(first bool) {
	ws, err := unix.IoctlGetWinsize(s.fd, unix.TIOCGWINSZ)
	if err != nil || ws.Row < 3 {
		if !first {
			s.teardown()
		}
		s.on = false
		return
	}
	s.rows, s.cols = int(ws.Row), int(ws.Col)
	var b strings.Builder
	if first {
		b.WriteString("\n") // room for the status row, keeping what is on the screen
	}
	// DECSTBM homes the cursor: save and restore it around, and keep it
	// inside the region.
	b.WriteString(safeout.Ctl(fmt.Sprintf("\x1b7\x1b[1;%dr\x1b8", s.rows-1)))
	if first {
		b.WriteString(safeout.Ctl("\x1b[1A"))
	}
	io.WriteString(s.w, b.String())
	if s.last != "" {
		s.write(s.last)
	}
}

// resize follows a change of the terminal's size (SIGWINCH).
func (s *statusLine) resize() {
	if s.on {
		s.setup(false)
	}
}

// draw shows the run's state: how many processes, locks held, goroutines
// waiting, and the deadlock once found.
func (s *statusLine) draw(r *report.Report, found *report.Report) {
	if !s.on {
		return
	}
	alive, held := 0, 0
	for _, p := range r.Processes {
		if p.Alive {
			alive++
		}
	}
	for _, l := range r.Locks {
		if l.Holder != nil {
			held++
		}
	}
	text := fmt.Sprintf("lockwatch: %s, %s held, %d waiting, %s", plural(alive, "process"), plural(held, "lock"),
		len(r.Waiters), time.Since(s.started).Round(100*time.Millisecond))
	if found != nil && len(found.Findings) > 0 {
		f := found.Findings[0]
		mark := "DEADLOCK"
		if s.colour {
			mark = safeout.Ctl("\x1b[1;31m") + "DEADLOCK" + safeout.Ctl("\x1b[0m")
		}
		text = fmt.Sprintf("lockwatch: %s (%s on %q, above); %s", mark, f.Kind, f.Lock, strings.TrimPrefix(text, "lockwatch: "))
	} else if i := slices.IndexFunc(r.Findings, func(f report.Finding) bool { return f.Kind == report.LockOrder }); i >= 0 {
		// A warning: locks taken in both orders, which can deadlock;
		// the report comes at the end of the run.
		var locks []string
		for _, st := range r.Findings[i].Order {
			locks = append(locks, strconv.Quote(st.From))
		}
		mark := "LOCK ORDER"
		if s.colour {
			mark = safeout.Ctl("\x1b[1;33m") + "LOCK ORDER" + safeout.Ctl("\x1b[0m")
		}
		text += fmt.Sprintf("; %s: %s taken in both orders (report at the end)", mark, strings.Join(locks, " and "))
	}
	s.write(text)
}

// text draws a message of its own, such as "waiting for PROGRAM to join".
func (s *statusLine) text(msg string) {
	if s.on {
		s.write("lockwatch: " + msg)
	}
}

// write draws text on the status row. It reads the terminal's size first:
// when PROGRAM has the terminal's foreground (its standard input is the
// terminal), a change of size signals PROGRAM's process group only, so
// lockwatch sees it here, at the next redraw.
func (s *statusLine) write(text string) {
	s.last = text
	if ws, err := unix.IoctlGetWinsize(s.fd, unix.TIOCGWINSZ); err == nil && (int(ws.Row) != s.rows || int(ws.Col) != s.cols) {
		s.setup(false) // draws s.last at the new size, or takes the line down
		return
	}
	line := string(fitLine([]byte(text), s.cols))
	io.WriteString(s.w, safeout.Ctl(fmt.Sprintf("\x1b7\x1b[%d;1H\x1b[K", s.rows))+line+safeout.Ctl("\x1b8"))
}

// teardown gives the terminal back: the whole screen scrolls again, and the
// status row is cleared.
func (s *statusLine) teardown() {
	if !s.on {
		return
	}
	s.on = false
	io.WriteString(s.w, safeout.Ctl(fmt.Sprintf("\x1b7\x1b[r\x1b[%d;1H\x1b[K\x1b8", s.rows)))
}
