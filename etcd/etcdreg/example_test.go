package etcdreg_test

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
)

// A lock in etcd, and what a reader sees of its holder.
func Example() {
	dir, err := os.MkdirTemp("", "etcdreg-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()

	ctx := context.Background()
	reg, err := etcdreg.Open(ctx, cli, "example", etcdreg.Options{Host: "host-a", Role: "worker"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	mu, err := reg.Mutex("queue.wlock")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := mu.Lock(ctx); err != nil {
		fmt.Println(err)
		return
	}
	s, err := etcdreg.Read(ctx, cli, "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range s.Locks {
		h := l.Holder.Record
		p, _ := s.Process(h.ID)
		fmt.Printf("%s held by %s [%s], lease alive: %v, token = Mutex.Token: %v\n", l.Name, h.ID.Host, p.Role, !l.Expired, l.Holder.Token == mu.Token())
	}
	if err := mu.Unlock(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: queue.wlock held by host-a [worker], lease alive: true, token = Mutex.Token: true
}
