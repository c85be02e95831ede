// Package gostacks adds to a report the goroutines of the Go processes of
// this machine that take part in a lock as a whole process: the holders
// and waiters of a kernel file lock (whose parties are processes, not
// goroutines), and the client processes of PostgreSQL sessions. They are
// read from the process's memory (lockwatch's memory reader: no probe, the
// process never stopped), so that the report shows the chain from a
// goroutine to the lock: the goroutine blocked in flock(2) or fcntl(2), or
// in a PostgreSQL driver's call, and what the holder's goroutines are
// blocked on.
//
//	g := gostacks.New()
//	defer g.Close()
//	g.Add(ctx, r, gostacks.Party{PID: 42, Start: st, Lock: "/tmp/x", Role: "waiter"}, gostacks.InFileLock)
//	g.Notes(r)
//
// A process that is not a Go program, or whose memory cannot be read, is
// left as it is (its stack from /proc, its line in the processes table);
// one that could not be read for another reason is named in a note.
package gostacks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/report"
)

// Source is the stack rows' source: a process's memory.
const Source = "memory"

// maxRows bounds the rows of one process's goroutines a report gets.
const maxRows = 8

// A Party is a process, its part in a lock, and the lock.
type Party struct {
	PID   int
	Start uint64 // /proc/PID/stat field 22; 0: not checked
	Lock  string // the lock's name in the report
	Role  string // "holder" or "waiter"
	// Why, when not "", says why the process is here (a session's client:
	// "client of session pg/123"), in the rows' state.
	Why string
}

// A Pick chooses the goroutines of a process to show for its part:
// InFileLock, InDriver or Blocked.
type Pick struct {
	keep func(g *goproc.Goroutine) bool
}

// The goroutines a Pick keeps.
var (
	// InFileLock keeps a goroutine blocked taking a kernel file lock: in
	// flock(2) or fcntl(2) (syscall's or golang.org/x/sys/unix's).
	InFileLock = Pick{inFileLock}
	// Blocked keeps a goroutine that is waiting or in a system call: what
	// a stuck process's goroutines are doing (a running one shows no
	// stack).
	Blocked = Pick{blocked}
	// InDriver keeps a goroutine inside a PostgreSQL driver's call (pgx,
	// lib/pq, database/sql): a client's goroutine waiting for its session.
	InDriver = Pick{inDriver}
)

// Reader reads each process once per report, and remembers what could not
// be read.
type Reader struct {
	// attach opens a process; nil is goproc.Attach with the default
	// bounds.
	attach func(pid int) (*goproc.Process, error)

	imgs map[int]*goproc.Image
	// bins are the binaries read, by their executable's identity, for
	// the processes that run the same one.
	bins    map[exeID]*goproc.Binary
	owners  []*goproc.Process // the processes whose binaries bins keeps
	failed  map[int]error
	summary map[int]string         // Summary's
	shown   map[int]map[int64]bool // goroutines already in a row, per process
}

// New returns a Reader.
func New() *Reader {
	return &Reader{imgs: map[int]*goproc.Image{}, bins: map[exeID]*goproc.Binary{}, failed: map[int]error{}, summary: map[int]string{}, shown: map[int]map[int64]bool{}}
}

// image reads the process's goroutines, once. A process that is not Go
// (or of a release the reader does not know) gives nil and no error.
func (g *Reader) image(ctx context.Context, p Party) *goproc.Image {
	if img, ok := g.imgs[p.PID]; ok {
		return img
	}
	g.imgs[p.PID] = nil
	attach := g.attach
	if attach == nil {
		attach = g.attachShared
	}
	pr, err := attach(p.PID)
	if err != nil {
		if !errors.Is(err, goproc.ErrNotGo) && !errors.Is(err, goproc.ErrExited) {
			g.failed[p.PID] = err
		}
		return nil
	}
	if !slices.Contains(g.owners, pr) {
		defer pr.Close()
	}
	if p.Start != 0 && pr.Start() != p.Start {
		return nil // another process has the pid now: not the party
	}
	img, err := pr.Read(ctx) // bounded by goproc's Options, as attach PID's

	if err != nil {
		if !errors.Is(err, goproc.ErrExited) {
			g.failed[p.PID] = err
		}
		return nil
	}
	g.imgs[p.PID] = img
	return img
}

// exeID is an executable file's identity: a binary read for one process
// is the one another process runs when its /proc/PID/exe has the same.
type exeID struct {
	dev, ino uint64
	size     int64
	mtime    unix.Timespec
}

// exeOf stats pid's executable.
func exeOf(pid int) (exeID, bool) {
	var st unix.Stat_t
	if unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st) != nil {
		return exeID{}, false
	}
	return exeID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim}, true
}

// attachShared opens pid with the binary of the last process read when it
// runs the same executable (its symbols and function table read once for
// the processes of one program, not once per process), or reads its binary
// and keeps it, and the process that owns it, open for the next until
// Close.
func (g *Reader) attachShared(pid int) (*goproc.Process, error) {
	// The runtime's layout from the table of known releases when the
	// binary's release is in it, not its DWARF (a few hundred milliseconds
	// of CPU in a large binary).
	opts := goproc.Options{Quick: true}
	id, ok := exeOf(pid)
	if !ok {
		return goproc.Attach(pid, opts)
	}
	if b := g.bins[id]; b != nil {
		opts.Binary = b
	}
	pr, err := goproc.Attach(pid, opts)
	if err != nil {
		return nil, err
	}
	// The executable is the same file after the attach: the process did
	// not exec another between the two looks.
	if again, ok := exeOf(pid); !ok || again != id {
		pr.Close()
		return goproc.Attach(pid, goproc.Options{Quick: true})
	}
	if opts.Binary == nil {
		// One binary kept at a time (the last one read), so that the
		// memory of a report on many executables is one binary's.
		g.Close()
		g.bins[id] = pr.Binary
		g.owners = append(g.owners, pr)
	}
	return pr, nil
}

// Close closes the binaries kept for the processes read.
func (g *Reader) Close() {
	for _, pr := range g.owners {
		pr.Close()
	}
	g.owners, g.bins = nil, map[exeID]*goproc.Binary{}
}

// Add reads party's goroutines (once per process) and appends to r the
// rows of those pick keeps and no row of the process shows yet, grouped by
// stack, at most a few rows per process. It reports whether it added any.
func (g *Reader) Add(ctx context.Context, r *report.Report, p Party, pick Pick) bool {
	img := g.image(ctx, p)
	if img == nil {
		return false
	}
	shown := g.shown[p.PID]
	if shown == nil {
		shown = map[int64]bool{}
		g.shown[p.PID] = shown
	}
	type group struct {
		row   report.StackRow
		state string
	}
	groups := map[string]*group{}
	var order []string
	rows := 0
	for _, gr := range img.Goroutines {
		gr := gr
		if gr.System || shown[gr.ID] || !pick.keep(&gr) {
			continue
		}
		frames := framesOf(gr.Frames)
		state := stateOf(&gr)
		key := state + "\x00" + frameKey(frames)
		if gp := groups[key]; gp != nil {
			gp.row.Count++
			gp.row.Goroutines = append(gp.row.Goroutines, gr.ID)
			shown[gr.ID] = true
			continue
		}
		if rows == maxRows {
			continue
		}
		rows++
		shown[gr.ID] = true
		st := state
		if p.Why != "" {
			st += " (" + p.Why + ")"
		}
		groups[key] = &group{row: report.StackRow{PID: p.PID, Lock: p.Lock, Role: p.Role, Source: Source, Count: 1,
			Goroutines: []int64{gr.ID}, State: st, Frames: frames}, state: state}
		order = append(order, key)
	}
	for _, k := range order {
		r.Stacks = append(r.Stacks, groups[k].row)
	}
	if len(order) > 0 && g.summary[p.PID] == "" {
		gp := groups[order[0]]
		g.summary[p.PID] = summarize(gp.row, gp.state)
	}
	return len(order) > 0
}

// Notes says in r which processes' memory could not be read, and why.
func (g *Reader) Notes(r *report.Report) {
	for _, pid := range slices.Sorted(maps.Keys(g.failed)) {
		r.Notes = append(r.Notes, fmt.Sprintf("pid %d's goroutines could not be read from its memory (%s): its stacks are its threads' from /proc",
			pid, oneLine(g.failed[pid])))
	}
}

// Summary is one line on what the first row Add added of pid shows:
// "goroutine 1 [chan receive] at main.main (main.go:42) (...)", for a
// finding's doing; "" when Add added no row of pid.
func (g *Reader) Summary(pid int) string { return g.summary[pid] }

// summarize is Summary's line for a row.
func summarize(row report.StackRow, state string) string {
	where := ""
	for _, f := range row.Frames {
		if own(f.Func) {
			where = fmt.Sprintf(" at %s (%s:%d)", f.Func, baseName(f.File), f.Line)
			break
		}
	}
	who := "goroutine " + strconv.FormatInt(row.Goroutines[0], 10)
	if row.Count > 1 {
		who = fmt.Sprintf("%d goroutines", row.Count)
	}
	return fmt.Sprintf("%s [%s]%s (its goroutines, read from its memory, are in the stacks below)", who, state, where)
}

// own reports whether a function is the program's, not the standard
// library's: package main, or a package whose path starts with a domain.
func own(fn string) bool {
	if strings.HasPrefix(fn, "main.") {
		return true
	}
	first, _, _ := strings.Cut(fn, "/")
	return strings.Contains(first, ".") && strings.Contains(fn, "/")
}

func inFileLock(gr *goproc.Goroutine) bool {
	for _, f := range gr.Frames {
		switch f.Func {
		case "syscall.Flock", "golang.org/x/sys/unix.Flock", "syscall.FcntlFlock", "golang.org/x/sys/unix.FcntlFlock",
			"golang.org/x/sys/unix.fcntl", "syscall.fcntl":
			return true
		}
	}
	return false
}

func blocked(gr *goproc.Goroutine) bool {
	return gr.Status == "waiting" || gr.Status == "syscall"
}

func inDriver(gr *goproc.Goroutine) bool {
	for _, f := range gr.Frames {
		if strings.HasPrefix(f.Func, "github.com/jackc/pgx") || strings.HasPrefix(f.Func, "github.com/lib/pq") || strings.HasPrefix(f.Func, "database/sql.") {
			return true
		}
	}
	return false
}

// stateOf is a goroutine's state as a traceback prints it.
func stateOf(gr *goproc.Goroutine) string {
	if gr.WaitReason != "" {
		return gr.WaitReason
	}
	return gr.Status
}

func framesOf(fs []goproc.Frame) []report.FrameJSON {
	out := make([]report.FrameJSON, 0, len(fs))
	for _, f := range fs {
		if goproc.Hidden(f.Func) {
			continue
		}
		out = append(out, report.FrameJSON{Func: f.Func, File: f.File, Line: f.Line})
	}
	return out
}

func frameKey(fs []report.FrameJSON) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s:%d;", f.Func, f.Line)
	}
	return b.String()
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
