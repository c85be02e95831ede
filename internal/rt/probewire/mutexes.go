package probewire

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// MaxMutexes caps the mutexes of one answer (held or awaited ones only);
// MutexView.Truncated counts the rest.
const MaxMutexes = 10000

// MutexView is what a probe says of the in-process drop-in mutexes of its
// process (github.com/lockwatch/lockwatch/sync): each one held or awaited,
// with its holder, readers and waiters.
type MutexView[F any] struct {
	PID   int       `json:"pid"`
	Start uint64    `json:"start"`
	Taken time.Time `json:"taken"`
	// Live counts the drop-in mutexes of the process held or awaited (an
	// unlocked one leaves no record); Mutexes lists them by ID, at most
	// MaxMutexes (Truncated counts the rest). The order is the mutexes'
	// order in memory, not the order they were first locked in: find a
	// mutex by its ID.
	Live      int        `json:"live"`
	Mutexes   []Mutex[F] `json:"mutexes"`
	Truncated int        `json:"truncated,omitempty"`
	// MoreWaiters counts goroutines that wait for a drop-in mutex but
	// found no room in the waiter table: not listed.
	MoreWaiters int64 `json:"more_waiters,omitempty"`
}

// Mutex is one drop-in Mutex or RWMutex.
type Mutex[F any] struct {
	// ID is the mutex's address: unique among the mutexes that exist at
	// one time (a mutex collected may be followed by another at its
	// address).
	ID   uint64 `json:"id"`
	Kind string `json:"kind"` // "mutex" or "rwmutex"
	// Name is the name given with sync.SetName, else First's site
	// ("pkg.Func file.go:12"); Named says which.
	Name  string `json:"name"`
	Named bool   `json:"named,omitempty"`
	First F      `json:"first"` // where its holder locked it, else its first reader (lowest goroutine id)
	// Holder holds it for writing (a Mutex: holds it).
	Holder *MutexHolder[F] `json:"holder,omitempty"`
	// Readers hold an RWMutex for reading; MoreReaders more do, unlisted.
	Readers     []MutexHolder[F] `json:"readers,omitempty"`
	MoreReaders int              `json:"more_readers,omitempty"`
	// Waiters, longest first.
	Waiters []MutexWaiter[F] `json:"waiters,omitempty"`
}

// MutexHolder is a holder or a reader.
type MutexHolder[F any] struct {
	Goroutine int64 `json:"goroutine"`
	Site      F     `json:"site"` // where it called Lock or RLock
	// Stack is the stack it acquired from, when it had to wait first
	// (a writer); else nil. Its current stack is in a goroutine dump.
	Stack []F `json:"stack,omitempty"`
	// Since is when it acquired, when it had to wait first; else, with
	// SinceSeen, when a goroutine that waits for the mutex first found it
	// held (it has held at least since then); else zero (an acquire that
	// did not wait reads no clock) and left out.
	Since     time.Time `json:"since,omitzero"`
	SinceSeen bool      `json:"since_seen,omitempty"`
}

// MutexWaiter is a goroutine blocked in Lock (Write) or RLock.
type MutexWaiter[F any] struct {
	Goroutine int64     `json:"goroutine"`
	Write     bool      `json:"write"`
	Stack     []F       `json:"stack"`
	Since     time.Time `json:"since"`
}

// ViewOf is the MutexView of a snapshot of the drop-in records of process
// pid (start): wall places a record's time (Nanotime's scale), frames
// symbolizes its PCs (record.FramesOf in the process itself, the process's
// binary from outside), and conv makes each frame the view's.
func ViewOf[F any](s inproc.Snapshot, pid int, start uint64, wall func(int64) time.Time, frames func([]uintptr) []record.Frame, conv func(record.Frame) F) *MutexView[F] {
	v := &MutexView[F]{PID: pid, Start: start, Taken: s.Taken, Live: s.Live,
		Mutexes: make([]Mutex[F], 0, len(s.Locks)), Truncated: s.Truncated, MoreWaiters: s.MoreWaiters}
	for _, l := range s.Locks {
		v.Mutexes = append(v.Mutexes, MutexOf(l, wall, frames, conv))
	}
	return v
}

// MutexOf converts a table record, symbolizing its PCs.
func MutexOf[F any](l inproc.Lock, wall func(int64) time.Time, frames func([]uintptr) []record.Frame, conv func(record.Frame) F) Mutex[F] {
	known := func(t int64) time.Time {
		if t == 0 {
			return time.Time{}
		}
		return wall(t)
	}
	stack := func(fs []record.Frame) []F {
		if fs == nil {
			return nil
		}
		out := make([]F, len(fs))
		for i, f := range fs {
			out[i] = conv(f)
		}
		return out
	}
	first := SiteOf(frames, l.First, l.First2)
	m := Mutex[F]{ID: l.ID, Kind: l.Kind.String(), Name: l.Name, Named: l.Name != "", First: conv(first),
		MoreReaders: l.MoreReaders}
	if !m.Named {
		m.Name = SiteName(first)
	}
	if l.Holder.Goroutine != 0 {
		m.Holder = &MutexHolder[F]{Goroutine: l.Holder.Goroutine, Site: conv(SiteOf(frames, l.Holder.PC, l.Holder.PC2)),
			Stack: stack(CleanStack(frames(l.HolderStack))), Since: known(l.Holder.Since), SinceSeen: l.HolderSeen}
	}
	for _, r := range l.Readers {
		m.Readers = append(m.Readers, MutexHolder[F]{Goroutine: r.Goroutine, Site: conv(SiteOf(frames, r.PC, r.PC2)), Since: known(r.Since)})
	}
	for _, w := range l.Waiters {
		m.Waiters = append(m.Waiters, MutexWaiter[F]{Goroutine: w.Goroutine, Write: w.Write,
			Stack: stack(CleanStack(frames(w.Stack))), Since: wall(w.Since)})
	}
	return m
}

// frameOf symbolizes the return address pc as a stack would.
func frameOf(frames func([]uintptr) []record.Frame, pc uintptr) record.Frame {
	if pc == 0 {
		return record.Frame{}
	}
	if fs := frames([]uintptr{pc}); len(fs) > 0 {
		return fs[len(fs)-1] // the outermost of any inlined calls: the caller of Lock
	}
	return record.Frame{}
}

// SiteOf is the site of a Lock call from the return addresses of Lock (pc)
// and of its caller (pc2): pc's frame, unless that is a wrapper the
// compiler generated (a method value, a promoted method called through an
// interface) or the standard library's sync (a Cond's Wait locks for its
// caller): then pc2's.
func SiteOf(frames func([]uintptr) []record.Frame, pc, pc2 uintptr) record.Frame {
	f := frameOf(frames, pc)
	if pc2 != 0 && (f.File == "<autogenerated>" || strings.HasPrefix(f.Func, "sync.")) {
		if f2 := frameOf(frames, pc2); f2.Func != "" {
			return f2
		}
	}
	return f
}

// SiteName is a mutex's display name from the site of its first Lock:
// "pkg.Func file.go:12".
func SiteName(f record.Frame) string {
	if f.Func == "" {
		return "(unnamed mutex)"
	}
	file := f.File
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		file = file[i+1:]
	}
	return fmt.Sprintf("%s %s:%d", f.Func, file, f.Line)
}

// CleanStack drops the compiler's go-statement wrappers, which the
// frame-pointer walk sees and runtime.Callers elides, and runtime.goexit.
func CleanStack(fs []record.Frame) []record.Frame {
	out := fs[:0]
	for _, f := range fs {
		if !strings.Contains(f.Func, ".gowrap") && f.Func != "runtime.goexit" {
			out = append(out, f)
		}
	}
	return out
}

// NoMutexesFile returns the name, in the run directory, of the file that
// said a process had no drop-in mutex, so that lockwatch need not ask it.
// The drop-in no longer registers its mutexes, so a probe cannot know it
// and makes no such file; lockwatch still honours one that an older probe
// made.
func NoMutexesFile(base string) string { return filepath.Base(base) + ".no-mutexes" }
