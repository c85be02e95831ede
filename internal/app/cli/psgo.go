package cli

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/texttable"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// psGo is a Go process of this user that runs no probe, as ps lists it
// (docs/json.md): what 'lockwatch attach PID' reads from its memory.
type psGo struct {
	PID        int    `json:"pid"`
	Command    string `json:"command"`
	GoVersion  string `json:"go_version"`
	Goroutines int    `json:"goroutines"`
	// LockWaiters counts goroutines blocked on a sync.Mutex or RWMutex.
	LockWaiters int `json:"lock_waiters"`
	// LongestWaitMS is a lower bound of the longest of their waits (the
	// runtime's g.waitsince); 0 when not known.
	LongestWaitMS int64 `json:"longest_wait_ms"`
	// Error says why its memory could not be read.
	Error string `json:"error,omitempty"`
}

// psGoTimeout bounds the read of one Go process by ps.
const psGoTimeout = 2 * time.Second

// psGoLimit bounds the Go processes ps reads (each read costs lockwatch a
// few milliseconds, and the process nothing).
const psGoLimit = 256

// goProcesses lists the Go processes of this user that run no probe
// (those with a probe are listed with their runs), reading each from its
// memory to count its goroutines blocked on locks.
func goProcesses(ctx context.Context) []psGo {
	out := []psGo{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || ctx.Err() != nil || len(out) >= psGoLimit {
			continue
		}
		if uid, err := liveness.Owner(pid); err != nil || uid != os.Getuid() {
			continue
		}
		exe := fmt.Sprintf("/proc/%d/exe", pid)
		bi, err := buildinfo.ReadFile(exe)
		if err != nil {
			continue // not Go, or gone
		}
		if _, ok, _ := liveness.Environ(pid, probe.EnvDir); ok {
			continue
		}
		g := psGo{PID: pid, GoVersion: bi.GoVersion, Command: (liveness.System{}).Command(pid)}
		if g.Command == "" {
			if l, err := os.Readlink(exe); err == nil {
				g.Command = filepath.Base(l)
			}
		}
		p, err := goproc.Attach(pid, goproc.Options{Quick: true, NoStacks: true})
		if err != nil {
			g.Error = oneLine(err.Error())
			out = append(out, g)
			continue
		}
		// Counted, not read whole: ps's memory stays the same whatever
		// the largest Go process of the user (goproc.Process.Count).
		rctx, cancel := context.WithTimeout(ctx, psGoTimeout)
		c, err := p.Count(rctx)
		cancel()
		p.Close()
		// Its binary's tables are garbage now: collected before the next
		// process's are read, ps's peak is that of the largest binary,
		// not of two.
		runtime.GC()
		if err != nil {
			g.Error = oneLine(err.Error())
			out = append(out, g)
			continue
		}
		g.Goroutines, g.LockWaiters, g.LongestWaitMS = c.Goroutines, c.LockWaiters, c.LongestWait.Milliseconds()
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// psGoTable writes the Go processes without a probe, with a hint for
// those whose goroutines wait for locks.
func psGoTable(w io.Writer, gs []psGo) error {
	if len(gs) == 0 {
		return nil
	}
	var rows [][]string
	for _, g := range gs {
		waiting, hint := "-", "-"
		switch {
		case g.Error != "":
			waiting = "unreadable"
			hint = reportcmd.Escape(g.Error)
		case g.LockWaiters > 0:
			waiting = strconv.Itoa(g.LockWaiters)
			if g.LongestWaitMS > 0 {
				waiting += fmt.Sprintf(" (longest >= %s)", (time.Duration(g.LongestWaitMS) * time.Millisecond).Round(time.Second))
			}
			hint = fmt.Sprintf("lockwatch attach %d", g.PID)
		}
		cmd := g.Command
		if utf8.RuneCountInString(cmd) > 40 {
			cmd = string([]rune(cmd)[:39]) + cutMark
		}
		rows = append(rows, []string{strconv.Itoa(g.PID), reportcmd.Escape(cmd), reportcmd.Escape(g.GoVersion),
			strconv.Itoa(g.Goroutines), waiting, hint})
	}
	fmt.Fprintln(w, "\nGo processes without a probe (read from their memory):")
	return texttable.Write(w, []string{"pid", "command", "go", "goroutines", "waiting on locks", "next"}, rows)
}
