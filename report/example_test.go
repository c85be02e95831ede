package report_test

import (
	"context"
	"fmt"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// memory is a lock source that keeps one snapshot in memory.
type memory struct{ snap *lockstate.Snapshot }

func (m memory) Read(context.Context) (*lockstate.Snapshot, error) { return m.snap, nil }

// alive says every process of this machine lives.
type alive struct{}

func (alive) Check(procid.ID) (procid.Status, error) { return procid.Alive, nil }
func (alive) Command(int) string                     { return "" }

// A goroutine that holds an RWMutex for reading asks for it again while a
// writer waits: sync.RWMutex's writer preference makes that a deadlock.
func Example() {
	now := time.Now()
	reader := lockstate.Party{ID: procid.ID{PID: 10, Start: 1}, Goroutine: 7}
	writer := lockstate.Party{ID: procid.ID{PID: 10, Start: 1}, Goroutine: 8}
	snap := &lockstate.Snapshot{Run: "example", Taken: now, Locks: []lockstate.Lock{{
		Kind: "rwmutex", Name: "cache",
		Holders: []lockstate.Holder{{Party: reader, Read: true, Since: now.Add(-time.Second)}},
		Waiters: []lockstate.Waiter{
			{Party: writer, Since: now.Add(-time.Second)},
			{Party: reader, Read: true, Since: now},
		},
	}}}
	src := report.Sources{Locks: []lockstate.Source{memory{snap}}, Host: alive{}}
	r, err := report.Diagnose(context.Background(), src, report.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range r.Findings {
		fmt.Println(f.Kind, f.LockKind, f.Lock)
		fmt.Println(f.Summary)
	}
	// Output:
	// self-deadlock rwmutex cache
	// pid 10 g7 asks to read "cache" again while it read-holds it and g8 waits to write it: a waiting writer blocks new readers, and the writer waits for this reader
}
