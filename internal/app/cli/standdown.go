package cli

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/report"
)

// Go's runtime ends a program whose goroutines are all blocked, with "all
// goroutines are asleep - deadlock!" and exit status 2, but only when nothing
// could wake one of them: a probe's socket, which waits in the runtime's
// network poller, and its tickers keep that from ever happening. run reads
// the goroutines of each process whose probe serves, from its memory
// (internal/diag/goproc, which never stops it), and when two reads in a row
// find every goroutine but the probe's blocked where only another goroutine
// of the process could wake it, it asks the probe to stand down
// (probewire.OpStandDown, after the report of a deadlock it found): the
// runtime then sees the program as it would without lockwatch, and ends it
// at once with its own message and status, which run passes on. A program
// that a timer no goroutine waits on (time.AfterFunc, a context's deadline)
// was about to wake goes on, and its probe serves again after the program's
// next garbage collection (probe/standdown.go: it forces one as it stands
// down, and waits for the one after).

// asleepReasons are the wait reasons of a goroutine that only another
// goroutine of its process wakes: channels (unless a timer feeds one, which
// is looked at), the sync package's locks, conditions and wait groups, and
// the runtime's semaphores. A goroutine that sleeps, waits in the network
// poller ("IO wait"), in a system call or in a synctest bubble is awake by
// this measure.
var asleepReasons = map[string]bool{
	"chan receive": true, "chan send": true, "select": true,
	"chan receive (nil chan)": true, "chan send (nil chan)": true, "select (no cases)": true,
	"sync.Mutex.Lock": true, "sync.RWMutex.RLock": true, "sync.RWMutex.Lock": true,
	"sync.Cond.Wait": true, "sync.WaitGroup.Wait": true, "semacquire": true,
}

// chanReasons are those of asleepReasons whose goroutine waits on channels
// that a timer may feed.
var chanReasons = map[string]bool{"chan receive": true, "chan send": true, "select": true}

// probeOwned reports whether g is one of the probe's own goroutines (which
// stand down): it starts in the probe's package (probePackage), or the
// probe started it.
func probeOwned(g *goproc.Goroutine) bool {
	if g.CreatedBy != nil && strings.HasPrefix(g.CreatedBy.Func, probePackage) {
		return true
	}
	return len(g.Frames) > 0 && strings.HasPrefix(g.Frames[len(g.Frames)-1].Func, probePackage)
}

// asleep says whether every goroutine of img but the runtime's and the
// probe's is blocked where only another goroutine of the process can wake
// it (asleepReasons, on no timer's channel: timerChans answers which
// channels a timer feeds). When it is, sig names those goroutines and their
// waits, for the confirming read; why says what keeps it awake otherwise.
func asleep(img *goproc.Image, timerChans func([]uint64) (map[uint64]bool, error)) (sig, why string) {
	if img.Inconsistent > 0 {
		return "", fmt.Sprintf("%d goroutines kept changing while read", img.Inconsistent)
	}
	var parts []string
	var chans []uint64
	for i := range img.Goroutines {
		g := &img.Goroutines[i]
		if g.System || probeOwned(g) {
			continue
		}
		if g.Status != goproc.StateWaiting || !asleepReasons[g.WaitReason] {
			return "", fmt.Sprintf("goroutine %d is %s", g.ID, strings.TrimSpace(g.Status+" "+g.WaitReason))
		}
		if chanReasons[g.WaitReason] {
			if len(g.Chans) == 0 {
				return "", fmt.Sprintf("the channels goroutine %d waits on could not be read", g.ID)
			}
			chans = append(chans, g.Chans...)
		}
		parts = append(parts, strconv.FormatInt(g.ID, 10)+" "+g.WaitReason)
	}
	if len(parts) == 0 {
		return "", "no goroutine of its own"
	}
	if len(chans) > 0 {
		timed, err := timerChans(chans)
		if err != nil {
			return "", err.Error()
		}
		for _, c := range chans {
			if timed[c] {
				return "", fmt.Sprintf("a timer feeds channel %#x", c)
			}
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ","), ""
}

// A sleepWatch finds the processes of a run whose goroutines are all
// blocked (asleep), at a cost bounded for processes that are not: a process
// is read only while its CPU time stands still, and each read that finds it
// awake puts off the next one longer (1 s, doubling to 4 s): an idle
// process that is not blocked is read at most every 4 s, and one that
// blocks for good after running a while is found within some 4 s.
type sleepWatch struct {
	procs map[proc.Identity]*sleepState
	// read reads a process's goroutines (goproc.Attach and Read; a
	// variable for the tests).
	read func(ctx context.Context, pid int) (*goproc.Image, func([]uint64) (map[uint64]bool, error), func(), error)
}

type sleepState struct {
	cpu     uint64        // CPU ticks at the last look
	next    time.Time     // no read before
	backoff time.Duration // after a read that found it awake
	sig     string        // the last read's, when it found it asleep
	down    bool          // its probe was asked to stand down
	sock    uint64        // the inode of the socket it was asked on
}

const (
	sleepBackoffMin = time.Second
	sleepBackoffMax = 4 * time.Second
)

func newSleepWatch() *sleepWatch {
	return &sleepWatch{procs: map[proc.Identity]*sleepState{}, read: readGoroutines}
}

// readGoroutines reads pid's goroutines from its memory.
func readGoroutines(ctx context.Context, pid int) (*goproc.Image, func([]uint64) (map[uint64]bool, error), func(), error) {
	p, err := goproc.Attach(pid, goproc.Options{Quick: true})
	if err != nil {
		return nil, nil, nil, err
	}
	img, err := p.Read(ctx)
	if err != nil {
		p.Close()
		return nil, nil, nil, err
	}
	return img, p.TimerChans, func() { p.Close() }, nil
}

// look returns the processes of r, alive and with a probe serving in run
// directory dir, that two reads in a row found asleep; each once.
func (w *sleepWatch) look(ctx context.Context, dir string, r *report.Report) []proc.Identity {
	now := time.Now()
	var out []proc.Identity
	seen := map[proc.Identity]bool{}
	for _, p := range r.Processes {
		id := procID(p.PID, p.Start)
		if !p.Alive || p.Host != "" || seen[id] {
			continue
		}
		seen[id] = true
		s := w.procs[id]
		if s == nil {
			s = &sleepState{}
			w.procs[id] = s
		}
		fi, err := os.Stat(probeclient.SocketPath(dir, id))
		if err != nil {
			continue // no probe serves: the runtime's detection is the program's own
		}
		ino := inode(fi)
		if s.down && ino == s.sock {
			continue // asked; its socket is still going away
		}
		s.down, s.sock = false, ino // a probe that came back is watched again
		st, err := proc.ReadStat(p.PID)
		if err != nil || st.Start != p.Start {
			continue
		}
		if st.CPU != s.cpu {
			s.cpu, s.sig = st.CPU, "" // running: not read now
			continue
		}
		if now.Before(s.next) {
			continue
		}
		img, timers, done, err := w.read(ctx, p.PID)
		sig := ""
		if err == nil {
			sig, _ = asleep(img, timers)
			done()
		}
		if sig == "" {
			s.sig = ""
			s.backoff = min(max(2*s.backoff, sleepBackoffMin), sleepBackoffMax)
			s.next = now.Add(s.backoff)
			continue
		}
		s.backoff = 0
		if sig != s.sig {
			s.sig = sig // confirmed by the next read, if it finds the same
			continue
		}
		s.down, s.sig = true, ""
		out = append(out, id)
	}
	for id := range w.procs {
		if !seen[id] {
			delete(w.procs, id)
		}
	}
	return out
}

// inode is fi's inode number, 0 if unknown.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// standDown asks the probe of each process of ids to stand down, saying so
// first (the runtime may end the process at once); it reports whether any
// did.
func (a *app) standDown(ctx context.Context, dir string, ids []proc.Identity) bool {
	any := false
	for _, id := range ids {
		fmt.Fprintf(a.msgs(), "lockwatch: pid %d: every goroutine was seen blocked in two reads; its probe stands down so that Go's runtime can end it if it is deadlocked\n", id.PID)
		c := &probeclient.Client{Path: probeclient.SocketPath(dir, id)}
		if err := c.StandDown(ctx); err != nil {
			fmt.Fprintf(a.msgs(), "lockwatch: pid %d: its probe did not stand down: %s\n", id.PID, oneLine(err.Error()))
			continue
		}
		any = true
	}
	return any
}
