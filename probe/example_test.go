package probe_test

import (
	"context"
	"fmt"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"os"
	"path/filepath"

	"github.com/lockwatch/lockwatch/probe"
)

// A program starts the probe, takes a lock of the run, and lockwatch (here,
// a Client in the same program) sees it through the control socket.
func Example() {
	tmp, err := os.MkdirTemp("", "probe-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(tmp)

	agent, err := probe.Start(probe.Options{Dir: filepath.Join(tmp, "run"), Role: "worker"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer agent.Close()
	ctx := context.Background()
	mu, err := agent.Registry().Mutex("queue.wlock")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := mu.Lock(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer mu.Unlock()

	c := &probeclient.Client{Path: agent.SocketPath()}
	info, err := c.Info(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("role %s, own pid: %v\n", info.Role, info.PID == os.Getpid())
	locks, err := c.Locks(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range locks.Held {
		fmt.Printf("holds %s, %d waiting\n", h.Lock, h.Waiting)
	}
	// Output:
	// role worker, own pid: true
	// holds queue.wlock, 0 waiting
}
