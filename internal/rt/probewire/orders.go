package probewire

import (
	"path/filepath"
	"time"
)

// OrderView is what a probe says of the lock order of its process's drop-in
// mutexes (docs/lock-order.md): every edge recorded, each an ordered pair
// of mutexes that a goroutine took one while holding the other.
type OrderView[F any] struct {
	PID   int       `json:"pid"`
	Start uint64    `json:"start"`
	Taken time.Time `json:"taken"`
	// Edges in the order they were recorded; at most Capacity.
	Edges    []OrderEdge[F] `json:"edges"`
	Capacity int            `json:"capacity"`
	// Dropped counts edges not recorded because the table was full
	// (distinct pairs; with DroppedRepeats at least that many: past the
	// room to tell pairs apart, they are no longer counted). A cycle
	// through them is missed.
	Dropped        uint64 `json:"dropped,omitempty"`
	DroppedRepeats bool   `json:"dropped_repeats,omitempty"`
	// Untracked counts acquires not tracked as held (more than 7 locks held
	// at once by the goroutines of one bucket): edges from them are missed.
	Untracked uint64 `json:"untracked,omitempty"`
	// Cut counts edges whose stacks were cut to their call sites, and
	// Omitted edges left out, to keep the answer within its size bound.
	Cut     int `json:"cut,omitempty"`
	Omitted int `json:"omitted,omitempty"`
}

// OrderEdge is one edge: goroutine Goroutine took To while it held From.
type OrderEdge[F any] struct {
	From      OrderMutex `json:"from"`
	To        OrderMutex `json:"to"`
	Goroutine int64      `json:"goroutine"`
	// FromStack is where it took From: the stack it recorded if it waited
	// for From, else From's call site followed by that frame's callers as
	// they were at the second acquire (when the function that took From
	// was still on the stack), else the site and its caller. ToStack is
	// where it took To. Innermost first.
	FromStack []F       `json:"from_stack"`
	ToStack   []F       `json:"to_stack"`
	Time      time.Time `json:"time"` // of the second acquire
}

// OrderMutex is a mutex as an edge names it: as in Mutex (its name is the
// site of its first Lock unless Named), and Read when the edge's acquire
// of it was an RLock.
type OrderMutex struct {
	ID    uint64 `json:"id"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Named bool   `json:"named,omitempty"`
	Read  bool   `json:"read,omitempty"`
}

// The JSON of an OrderView stays within what a client reads (4 MiB): past
// OrdersFile returns the name, in the run directory, of the file where the
// process of socket base name base keeps its edges for after it exits:
// its OrderView as JSON, replaced whole as edges are recorded.
func OrdersFile(base string) string { return filepath.Base(base) + ".orders.json" }

// DownFile returns the name, in the run directory, of the file the probe of
// socket base name base keeps while it stands down (no socket: it gave way
// so that Go's runtime may judge a program that looked deadlocked), so that
// lockwatch can say why it does not answer.
func DownFile(base string) string { return filepath.Base(base) + ".down" }
