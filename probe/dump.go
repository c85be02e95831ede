package probe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/stops"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/procid"
)

const (
	// stuckDumpEvery is the least time between two dump pairs of the stuck
	// hook in one process, whichever goroutines wait: a text dump stops the
	// world (80-150 ms at 10,000 goroutines).
	stuckDumpEvery = 5 * time.Second
	// maxStuckDumps caps the stuck hook's dump pairs per agent: a text dump
	// of 10,000 goroutines takes some 7 MiB, of memory under /dev/shm.
	maxStuckDumps = 16
)

// errEnoughDumps reports that the stuck hook wrote maxStuckDumps pairs.
var errEnoughDumps = fmt.Errorf("%d dump pairs written already; ask lockwatch or send SIGUSR1 for more", maxStuckDumps)

// A dumper takes this process's goroutine dumps, one at a time, and keeps
// the stuck hook's rate limit. The zero value is ready to use.
type dumper struct {
	// capMu serializes captures: two text dumps at once would stop the
	// world for twice as long.
	capMu sync.Mutex

	// rd is the run directory's handle: dump files are created relative to
	// it, so that a path swapped after the run was opened never redirects
	// a dump. Nil (tests of the dumper alone): by path.
	rd *arena.RunDir

	mu        sync.Mutex
	last      time.Time // when the stuck hook's last dump pair began
	lastPaths [2]string // its files: text, profile
	pairs     int       // dump pairs the stuck hook began
}

// capture takes a dump in format: the text traceback, the goroutine
// profile or an execution trace.
func (d *dumper) capture(format string) (*probewire.Dump, error) {
	d.capMu.Lock()
	defer d.capMu.Unlock()
	capture := captureProfile
	switch format {
	case probewire.FormatText:
		capture = captureTextDump
	case probewire.FormatTrace:
		capture = captureTrace
	}
	before := stops.Read()
	begin := time.Now()
	b, err := capture()
	took := time.Since(begin)
	stopped := stops.Longest(before, stops.Read())
	if err != nil {
		return nil, fmt.Errorf("taking the %s dump: %w", format, err)
	}
	return &probewire.Dump{Format: format, Data: b, Size: len(b), Taken: begin, Pause: took, Stopped: stopped}, nil
}

// profileFile writes a goroutine profile to <base>.<reason>-<time>.pb.gz.
func (d *dumper) profileFile(base, reason string) (string, error) {
	path := dumpName(base, reason, time.Now()) + ".pb.gz"
	return path, d.writeDump(path, false)
}

// stuckPair writes a dump pair for the stuck hook, unless one was begun in
// the last stuckDumpEvery: then it returns that one's paths and age. After
// maxStuckDumps pairs it writes no more and returns errEnoughDumps.
func (d *dumper) stuckPair(base string, now time.Time) (paths [2]string, age time.Duration, err error) {
	d.mu.Lock()
	if !d.last.IsZero() && now.Sub(d.last) < stuckDumpEvery {
		paths, age = d.lastPaths, now.Sub(d.last)
		d.mu.Unlock()
		return paths, age, nil
	}
	if d.pairs >= maxStuckDumps {
		d.mu.Unlock()
		return paths, 0, errEnoughDumps
	}
	name := dumpName(base, "stuck", now)
	paths = [2]string{name + ".txt", name + ".pb.gz"}
	d.last, d.lastPaths = now, paths
	d.pairs++
	d.mu.Unlock()

	err = errors.Join(d.writeDump(paths[0], true), d.writeDump(paths[1], false))
	if err != nil {
		d.mu.Lock()
		if d.last.Equal(now) {
			d.last = time.Time{} // let the next call try again
			d.pairs--
		}
		d.mu.Unlock()
	}
	return paths, 0, err
}

// writeDump captures a dump into a new file at path, mode 0600.
func (d *dumper) writeDump(path string, text bool) error {
	create, remove := func() (*os.File, error) {
		return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	}, func() { _ = os.Remove(path) }
	if d.rd != nil {
		create = func() (*os.File, error) { return d.rd.CreateFile(filepath.Base(path)) }
		remove = func() { _ = d.rd.Remove(filepath.Base(path)) }
	}
	f, err := create()
	if err != nil {
		return err
	}
	format := probewire.FormatProto
	if text {
		format = probewire.FormatText
	}
	dump, err := d.capture(format)
	if err == nil {
		_, err = f.Write(dump.Data)
	}
	if err = errors.Join(err, f.Close()); err != nil {
		remove()
	}
	return err
}

// dumpName is the path of a dump file without its extension:
// <base>.<reason>-YYYYMMDD-HHMMSS.nnnnnnnnn, where base is the process's
// arena.ProcessFiles base.
func dumpName(base, reason string, t time.Time) string {
	return fmt.Sprintf("%s.%s-%s", base, reason, t.Format("20060102-150405.000000000"))
}

// onStuck is the default stuck hook (lockreg.Options.OnStuck): a line on
// Stderr, and a dump pair at most every stuckDumpEvery, once per wait. The
// later calls of the same wait (lockreg calls again at 30 s, 70 s, 150 s...)
// say nothing new and write nothing, unless the holder's state changed (it
// died, or the lock changed hands): then the line, and a dump, again.
func (a *Agent) onStuck(e lockreg.StuckEvent) {
	if !a.stuckNews(e) {
		return
	}
	where := "no dump: the probe is closed"
	if !a.isClosed() {
		paths, age, err := a.dump.stuckPair(a.base, time.Now())
		switch {
		case err != nil:
			where = fmt.Sprintf("no dump: %v", err)
		case age > 0:
			where = fmt.Sprintf("dump (%v ago): %s and %s", age.Round(time.Millisecond), paths[0], paths[1])
		default:
			where = fmt.Sprintf("dump: %s and %s", paths[0], paths[1])
		}
	}
	fmt.Fprintf(a.stderr, "lockwatch: pid %d goroutine %d has waited %v for lock %q, %s; %s\n",
		a.self.PID, e.Goroutine, e.Waited.Round(time.Millisecond), e.Lock, holderText(e), where)
}

// maxStuckTold bounds the waits the stuck hook remembers.
const maxStuckTold = 1024

// stuckKey names a wait: one goroutine, one lock.
type stuckKey struct {
	goroutine int64
	lock      string
}

// stuckNews reports whether e is to be told: the first call of a wait, or
// a later one whose holder is not as it was told.
func (a *Agent) stuckNews(e lockreg.StuckEvent) bool {
	k, holder := stuckKey{e.Goroutine, e.Lock}, holderText(e)
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.Calls > 1 && a.told[k] == holder {
		return false
	}
	if a.told == nil || len(a.told) >= maxStuckTold {
		a.told = make(map[stuckKey]string)
	}
	a.told[k] = holder
	return true
}

// holderText says who holds the lock of e and whether that process lives.
func holderText(e lockreg.StuckEvent) string {
	h := e.Holder
	if h.PID == 0 {
		if e.OwnerDied {
			return "whose holder died holding it (unknown pid)"
		}
		return "held by no known process (it may just have changed hands)"
	}
	who := fmt.Sprintf("held by pid %d goroutine %d", h.PID, h.Goroutine)
	if h.Goroutine == 0 {
		who = fmt.Sprintf("held by pid %d (goroutine not recorded)", h.PID)
	}
	switch {
	case e.HolderStatus == procid.Gone:
		return who + ", which is dead (no such process)"
	case e.HolderStatus == procid.Zombie:
		return who + ", which is dead (a zombie, not yet reaped)"
	case e.HolderStatus == procid.Reused:
		return who + ", which is dead (its pid now belongs to another process)"
	case e.OwnerDied:
		return who + ", which is dead (the lock is marked owner-died)"
	case e.HolderStatus == procid.Alive:
		return who + ", which is alive"
	}
	return fmt.Sprintf("%s, which may be alive (%s)", who, e.HolderStatus)
}
