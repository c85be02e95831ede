package lockregsrc_test

import (
	"context"
	"fmt"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
)

// deadHost says that pid 4242 is gone and everything else lives.
type deadHost struct{}

func (deadHost) Check(id proc.Identity) (proc.Status, error) {
	if id.PID == 4242 {
		return proc.Gone, nil
	}
	return proc.Alive, nil
}

func (deadHost) Command(int) string { return "" }

func Example() {
	now := time.Now()
	snap := &arena.Snapshot{Taken: now,
		Locks: []arena.Lock{{Name: "queue.wlock", HolderPID: 4242,
			Holder: &arena.Holder{PID: 4242, Start: 7, Goroutine: 14, Since: now.Add(-time.Second)}}},
		Waiters: []arena.Waiter{{PID: 4240, Start: 5, Goroutine: 7, LockName: "queue.wlock", Since: now}},
	}
	read := func(string) (*arena.Snapshot, error) { return snap, nil }
	src := lockregsrc.Source{Dir: "run", ReadSnapshot: read}
	r, err := report.Diagnose(context.Background(), report.Sources{Locks: []lockstate.Source{src}, Host: deadHost{}}, report.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range r.Findings {
		fmt.Println(f.Kind, f.Lock, f.Holder.PID, f.Holder.State, f.Waiters[0].PID)
	}
	// Output:
	// dead-holder queue.wlock 4242 dead 4240
}
