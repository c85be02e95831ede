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
