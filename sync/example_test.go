package sync_test

import (
	"fmt"

	"github.com/lockwatch/lockwatch/sync"
)

// A program changes its import line and nothing else; SetName gives the
// few mutexes one looks for by name a name in lockwatch's reports.
func Example() {
	type queue struct {
		mu  sync.Mutex
		buf []string
	}
	q := &queue{}
	sync.SetName(&q.mu, "queue.buf")

	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.buf = append(q.buf, "item")
		})
	}
	wg.Wait()
	fmt.Println(len(q.buf), "items")
	// Output: 4 items
}
