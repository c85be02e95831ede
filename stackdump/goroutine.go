package stackdump

import (
	"strings"
	"time"
)

// A Snapshot is the goroutines of one process at one moment, as read from
// traceback text (Parse of a SIGQUIT dump, a panic, runtime.Stack, a file).
//
// The zero value is an empty snapshot. A Snapshot is a plain value: it is
// safe for concurrent reads, not for concurrent writes.
type Snapshot struct {
	PID  int       `json:"pid,omitempty"` // 0 when parsed from text, which does not say
	Time time.Time `json:"time,omitzero"` // zero when parsed from text
	// Reason is the first line of the preamble that explains the dump:
	// "panic: ...", "fatal error: ...", "SIGQUIT: quit", "panic: test timed
	// out after 10m0s". Empty for a dump the program asked for itself.
	Reason     string      `json:"reason,omitempty"`
	Goroutines []Goroutine `json:"goroutines"`
	// Cut reports that the input ended inside this dump: its last line had
	// no line ending, or its last frame no source line. Goroutines after
	// the cut are missing.
	Cut bool `json:"cut,omitempty"`
	// LongLines counts lines longer than Parse keeps (64 KiB): each kept
	// its start and its end, with "...[N bytes cut]..." between them.
	LongLines int `json:"long_lines,omitempty"`
	// Dropped counts goroutines read but not kept: past MaxGoroutines or
	// MaxRetained (Parse's bounds on what it builds of one input).
	Dropped int `json:"dropped,omitempty"`
}

// A Goroutine is one goroutine of a traceback.
type Goroutine struct {
	ID    int64         `json:"id"`
	State string        `json:"state"`          // as printed: "running", "chan receive", "sync.Mutex.Lock", "IO wait"
	Wait  time.Duration `json:"wait,omitempty"` // how long it has been blocked; the runtime counts whole minutes and omits less than one
	// LockedToThread reports "locked to thread" (runtime.LockOSThread).
	LockedToThread bool `json:"locked_to_thread,omitempty"`
	// Frames are innermost first. Runtime frames are left out unless the
	// dump was made with GOTRACEBACK=system or crash.
	Frames []Frame `json:"frames"`
	// Elided is set when the runtime left frames out of a deep stack.
	Elided *Elision `json:"elided,omitempty"`
	// StackUnavailable reports "goroutine running on other thread; stack
	// unavailable": the goroutine was running when the dump was made.
	StackUnavailable bool `json:"stack_unavailable,omitempty"`
	// CreatedBy is the go statement that started the goroutine; nil for the
	// main goroutine and for runtime goroutines.
	CreatedBy *Frame `json:"created_by,omitempty"`
	// CreatorID is the goroutine that ran that go statement; Go prints it
	// since 1.21 ("created by main.main in goroutine 1"), 0 before.
	CreatorID int64 `json:"creator_id,omitempty"`
	// Ancestors are the stacks of the goroutines that created this one, at
	// the time they created it, nearest first. Go prints them only with
	// GODEBUG=tracebackancestors=N.
	Ancestors []Ancestor `json:"ancestors,omitempty"`
	// Labels are the pprof labels of the goroutine, when the dump shows
	// them (GODEBUG=tracebacklabels=1, or a goroutine profile).
	Labels map[string]string `json:"labels,omitempty"`
}

// An Ancestor is the stack of a creating goroutine when it ran the go
// statement ("[originating from goroutine N]:").
type Ancestor struct {
	ID        int64    `json:"id"`
	Frames    []Frame  `json:"frames"` // no arguments: the runtime prints "(...)"
	Elided    *Elision `json:"elided,omitempty"`
	CreatedBy *Frame   `json:"created_by,omitempty"`
}

// An Elision marks frames the runtime left out of a deep stack: Go prints
// the innermost and the outermost frames and "...N frames elided..." in
// between (before Go 1.21: the first 100 frames and "...additional frames
// elided...").
type Elision struct {
	At    int `json:"at"`              // frames are missing before Frames[At]
	Count int `json:"count,omitempty"` // how many; 0 when the runtime did not say
}

// Calls reports whether a frame of g's stack (not of its creator or
// ancestors) is in a function whose name starts with funcPrefix, such as
// "sync.(*Mutex).Lock" or "github.com/lockwatch/lockwatch/lockreg.".
func (g Goroutine) Calls(funcPrefix string) bool {
	for _, f := range g.Frames {
		if strings.HasPrefix(f.Func, funcPrefix) {
			return true
		}
	}
	return false
}

// Goroutine returns the goroutine with the given id.
func (s *Snapshot) Goroutine(id int64) (Goroutine, bool) {
	for _, g := range s.Goroutines {
		if g.ID == id {
			return g, true
		}
	}
	return Goroutine{}, false
}

// Calling returns the goroutines for which Calls(funcPrefix) is true, in
// the order of the snapshot.
func (s *Snapshot) Calling(funcPrefix string) []Goroutine {
	var out []Goroutine
	for _, g := range s.Goroutines {
		if g.Calls(funcPrefix) {
			out = append(out, g)
		}
	}
	return out
}
