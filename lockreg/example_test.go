package lockreg_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lockwatch/lockwatch/internal/rt/arena"

	"github.com/lockwatch/lockwatch/lockreg"
)

func Example() {
	tmp, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "run")

	reg, err := lockreg.Open(dir, lockreg.Options{Role: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	mu, _ := reg.Mutex("queue.wlock")
	if err := mu.Lock(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	// Any process of the same user can read the run, without joining it.
	snap, _ := arena.ReadSnapshot(dir)
	for _, l := range snap.Locks {
		fmt.Printf("%s held by this process: %v\n", l.Name, l.HolderPID == os.Getpid())
		frames, _ := snap.Stack(l.Holder.Identity(), l.Holder.Stack)
		fmt.Println("acquired in", frames[0].Func)
	}
	_ = mu.Unlock()
	// Output:
	// queue.wlock held by this process: true
	// acquired in github.com/lockwatch/lockwatch/lockreg_test.Example
}

func ExampleMutex_Lock_recover() {
	tmp, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(tmp)
	reg, _ := lockreg.Open(filepath.Join(tmp, "run"), lockreg.Options{Policy: lockreg.Recover})
	defer reg.Close()
	mu, _ := reg.Mutex("state")

	switch err := mu.Lock(context.Background()); err {
	case nil:
		fmt.Println("locked")
	case lockreg.ErrOwnerDead:
		fmt.Println("the last holder died: repair the state, then go on")
	default:
		fmt.Println(err)
		return
	}
	_ = mu.Unlock()
	// Output: locked
}

// A resource refuses the writes of stale holders: the writer sends its
// hold's token with each write, and the resource, a process of the run
// that applies writes one at a time, admits a write only through its Fence.
func ExampleFence() {
	tmp, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(tmp)
	reg, _ := lockreg.Open(filepath.Join(tmp, "run"), lockreg.Options{})
	defer reg.Close()
	mu, _ := reg.Mutex("ledger")

	// The resource's side: its own handle of the lock, and the highest
	// token it has admitted (kept with its data across restarts).
	resource := &lockreg.Fence{Mutex: mu}
	write := func(token int64, what string) {
		if err := resource.Admit(token); err != nil {
			fmt.Println("refused", what)
			return
		}
		fmt.Println("applied", what)
	}

	_ = mu.Lock(context.Background())
	first := mu.Token()
	write(first, "the first hold's write")
	_ = mu.Unlock()

	_ = mu.Lock(context.Background())
	write(mu.Token(), "the second hold's write")
	write(first, "a late write of the first hold")
	_ = mu.Unlock()
	// Output:
	// applied the first hold's write
	// applied the second hold's write
	// refused a late write of the first hold
}
