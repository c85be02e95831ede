package probe

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// cutOrderBytes an edge's stacks are cut to their sites, past
// maxOrderBytes edges are left out (counted).
const (
	cutOrderBytes = 2 << 20
	maxOrderBytes = 7 << 19 // 3.5 MiB
)

// orders reads this process's edge table. Edges share most of their
// frames, so each return address is symbolized once per answer.
func (a *Agent) orders() *orderView {
	o := inproc.TakeOrders()
	mono, now := record.Nanotime(), time.Now()
	v := &orderView{PID: a.self.PID, Start: a.self.Start, Taken: now, Edges: make([]orderEdge, 0, len(o.Edges)),
		Capacity: o.Capacity, Dropped: o.Dropped, DroppedRepeats: o.DroppedRepeats, Untracked: o.Untracked}
	z := symbolizer{frames: map[uintptr][]record.Frame{}, sizes: map[uintptr]int{}}
	size := 0
	for _, e := range o.Edges {
		oe := orderEdge{From: orderMutex(e.From, e.FromRead), To: orderMutex(e.To, e.ToRead), Goroutine: e.Goroutine,
			Time: record.Wall(e.Time, mono, now)}
		n := jsonSize(oe)
		from, nf := z.stack(e.FromStack)
		to, nt := z.stack(e.ToStack)
		if size+n+nf+nt > cutOrderBytes {
			from, nf = []record.Frame{probewire.SiteOf(record.FramesOf, e.FromSite, e.FromSite2)}, 0
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
	frames map[uintptr][]record.Frame
	sizes  map[uintptr]int
}

// stack returns the frames of pcs (without the go-statement wrappers and
// runtime.goexit) and an upper bound of their size in JSON.
func (z *symbolizer) stack(pcs []uintptr) ([]record.Frame, int) {
	out, size := []record.Frame{}, 0
	for _, pc := range pcs {
		fs, ok := z.frames[pc]
		if !ok {
			fs = probewire.CleanStack(record.FramesOf([]uintptr{pc}))
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
func frameSize(f record.Frame) int {
	b, err := json.Marshal(f)
	if err != nil {
		return maxOrderBytes // cannot happen: a frame is plain data
	}
	return len(b) + 1
}

// jsonSize is the size of an edge in the answer's JSON, without its
// stacks' frames.
func jsonSize(e orderEdge) int {
	b, err := json.Marshal(e)
	if err != nil {
		return maxOrderBytes // cannot happen: an edge is plain data
	}
	return len(b) + 1
}

func orderMutex(l inproc.OrderLock, read bool) probewire.OrderMutex {
	m := probewire.OrderMutex{ID: l.ID, Kind: l.Kind.String(), Name: l.Name, Named: l.Name != "", Read: read}
	if !m.Named {
		m.Name = probewire.SiteName(probewire.SiteOf(record.FramesOf, l.First, l.First2))
	}
	return m
}

// saveOrdersAfter is how long the agent waits, after the loop saw a new
// edge (at its next wake, within idleEvery), to write the orders file: the
// edges of one burst are written once.
const saveOrdersAfter = 100 * time.Millisecond

// keepOrders writes the orders file when edges are recorded, until stop is
// closed (Close, or the agent stands down), and once more then, so that
// lockwatch reads a process's edges after
// it exited (run's final report). A process that dies (or exits without
// Close) within idleEvery+saveOrdersAfter of recording an edge may leave it
// out of the file.
func (a *Agent) keepOrders(stop <-chan struct{}, tick <-chan struct{}) {
	defer a.wg.Done()
	save := func() {
		if err := a.saveOrders(); err != nil {
			fmt.Fprintf(a.stderr, "lockwatch: pid %d: writing the lock-order edges: %v\n", a.self.PID, err)
		}
	}
	save()
	// The drop-in signals nothing (a channel would be a happens-before
	// edge between the goroutine that records an edge and this one): the
	// loop looks at the count at each wake and ticks.
	for {
		select {
		case <-stop:
			save()
			return
		case <-tick:
			save()
		}
	}
}

// ordersSaved is what the orders file holds: the count of edges and of
// those dropped when it was written (a process that records no edge
// writes no file).
type ordersSaved struct {
	mu      sync.Mutex
	edges   int
	dropped uint64
}

// saveOrders writes the orders file if edges were recorded since it was
// last written. keepOrders calls it, and the stand-down before the socket
// goes, so that an attach that finds no socket finds the edges on file.
func (a *Agent) saveOrders() error {
	a.ordersSaved.mu.Lock()
	defer a.ordersSaved.mu.Unlock()
	n, d := inproc.EdgeCount()
	if n == a.ordersSaved.edges && d == a.ordersSaved.dropped {
		return nil
	}
	b, err := json.Marshal(a.orders())
	if err == nil {
		err = replaceFile(a.rd, probewire.OrdersFile(a.base), b)
	}
	if err != nil {
		return err
	}
	a.ordersSaved.edges, a.ordersSaved.dropped = n, d
	return nil
}
