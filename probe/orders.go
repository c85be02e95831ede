package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	"github.com/lockwatch/lockwatch/stackdump"
)

// OrderView is what a probe says of the lock order of its process's drop-in
// mutexes (docs/lock-order.md): every edge recorded, each an ordered pair
// of mutexes that a goroutine took one while holding the other.
type OrderView struct {
	PID   int       `json:"pid"`
	Start uint64    `json:"start"`
	Taken time.Time `json:"taken"`
	// Edges in the order they were recorded; at most Capacity.
	Edges    []OrderEdge `json:"edges"`
	Capacity int         `json:"capacity"`
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
type OrderEdge struct {
	From      OrderMutex `json:"from"`
	To        OrderMutex `json:"to"`
	Goroutine int64      `json:"goroutine"`
	// FromStack is where it took From: the stack it recorded if it waited
	// for From, else From's call site followed by that frame's callers as
	// they were at the second acquire (when the function that took From
	// was still on the stack), else the site and its caller. ToStack is
	// where it took To. Innermost first.
	FromStack []stackdump.Frame `json:"from_stack"`
	ToStack   []stackdump.Frame `json:"to_stack"`
	Time      time.Time         `json:"time"` // of the second acquire
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
// cutOrderBytes an edge's stacks are cut to their sites, past
// maxOrderBytes edges are left out (counted).
const (
	cutOrderBytes = 2 << 20
	maxOrderBytes = 7 << 19 // 3.5 MiB
)

// Orders asks for the lock-order edges of the process's drop-in mutexes.
func (c *Client) Orders(ctx context.Context) (*OrderView, error) {
	ans, _, err := c.do(ctx, request{Op: opOrders})
	if err != nil {
		return nil, err
	}
	if ans.Orders == nil {
		return nil, &AnswerError{Op: opOrders, Message: "answer without orders"}
	}
	return ans.Orders, nil
}

// orders reads this process's edge table. Edges share most of their
// frames, so each return address is symbolized once per answer.
func (a *Agent) orders() *OrderView {
	o := inproc.TakeOrders()
	mono, now := record.Nanotime(), time.Now()
	v := &OrderView{PID: a.self.PID, Start: a.self.Start, Taken: now, Edges: make([]OrderEdge, 0, len(o.Edges)),
		Capacity: o.Capacity, Dropped: o.Dropped, DroppedRepeats: o.DroppedRepeats, Untracked: o.Untracked}
	z := symbolizer{frames: map[uintptr][]stackdump.Frame{}, sizes: map[uintptr]int{}}
	size := 0
	for _, e := range o.Edges {
		oe := OrderEdge{From: orderMutex(e.From, e.FromRead), To: orderMutex(e.To, e.ToRead), Goroutine: e.Goroutine,
			Time: record.Wall(e.Time, mono, now)}
		n := jsonSize(oe)
		from, nf := z.stack(e.FromStack)
		to, nt := z.stack(e.ToStack)
		if size+n+nf+nt > cutOrderBytes {
			from, nf = []stackdump.Frame{siteOf(stackdump.FramesOf, e.FromSite, e.FromSite2)}, 0
			to, nt = to[:min(len(to), 1)], 0
			for _, f := range from {
				nf += frameSize(f)
			}
			for _, f := range to {
				nt += frameSize(f)
			}
			v.Cut++
		}
		if size+n+nf+nt > maxOrderBytes {
			v.Omitted++
			continue
		}
		oe.FromStack, oe.ToStack = from, to
		size += n + nf + nt
		v.Edges = append(v.Edges, oe)
	}
	return v
}

// symbolizer symbolizes return addresses, each once, and knows the size
// of their frames in JSON.
type symbolizer struct {
	frames map[uintptr][]stackdump.Frame
	sizes  map[uintptr]int
}

// stack returns the frames of pcs (without the go-statement wrappers and
// runtime.goexit) and an upper bound of their size in JSON.
func (z *symbolizer) stack(pcs []uintptr) ([]stackdump.Frame, int) {
	out, size := []stackdump.Frame{}, 0
	for _, pc := range pcs {
		fs, ok := z.frames[pc]
		if !ok {
			fs = cleanStack(stackdump.FramesOf([]uintptr{pc}))
			n := 0
			for _, f := range fs {
				n += frameSize(f)
			}
			z.frames[pc], z.sizes[pc] = fs, n
		}
		out = append(out, fs...)
		size += z.sizes[pc]
	}
	return out, size
}

// frameSize is a frame's size in JSON, with its comma.
func frameSize(f stackdump.Frame) int {
	b, err := json.Marshal(f)
	if err != nil {
		return maxOrderBytes // cannot happen: a frame is plain data
	}
	return len(b) + 1
}

// jsonSize is the size of an edge in the answer's JSON, without its
// stacks' frames.
func jsonSize(e OrderEdge) int {
	b, err := json.Marshal(e)
	if err != nil {
		return maxOrderBytes // cannot happen: an edge is plain data
	}
	return len(b) + 1
}

func orderMutex(l inproc.OrderLock, read bool) OrderMutex {
	m := OrderMutex{ID: l.ID, Kind: l.Kind.String(), Name: l.Name, Named: l.Name != "", Read: read}
	if !m.Named {
		m.Name = siteName(siteOf(stackdump.FramesOf, l.First, l.First2))
	}
	return m
}

// OrdersFile returns the name, in the run directory, of the file where the
// process of socket base name base keeps its edges for after it exits:
// its OrderView as JSON, replaced whole as edges are recorded.
func OrdersFile(base string) string { return filepath.Base(base) + ".orders.json" }

// saveOrdersAfter is how long the agent waits, after an edge is recorded,
// to write the orders file: the edges of one burst are written once.
const saveOrdersAfter = 100 * time.Millisecond

// keepOrders writes the orders file when edges are recorded, until Close,
// and once more at Close, so that lockwatch reads a process's edges after
// it exited (run's final report). A process that dies (or exits without
// Close) within saveOrdersAfter of recording an edge leaves it out of the
// file.
func (a *Agent) keepOrders() {
	defer a.wg.Done()
	saved := 0 // a process that records no edge writes no file
	var savedDropped uint64
	save := func() {
		n, d := inproc.EdgeCount()
		if n == saved && d == savedDropped {
			return
		}
		b, err := json.Marshal(a.orders())
		if err == nil {
			err = replaceFile(a.reg.RunDir(), OrdersFile(a.base), b)
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "lockwatch: pid %d: writing the lock-order edges: %v\n", a.self.PID, err)
			return
		}
		saved, savedDropped = n, d
	}
	save()
	// The drop-in signals nothing (a channel would be a happens-before
	// edge between the goroutine that records an edge and this one): the
	// count is looked at every saveOrdersAfter.
	t := time.NewTicker(saveOrdersAfter)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			save()
			return
		case <-t.C:
			save()
		}
	}
}
