// Package etcdtest has what the etcd module's tests share.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
)

// WaitKeys waits until n keys stand under prefix, at most a minute.
func WaitKeys(t testing.TB, cli *clientv3.Client, prefix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == n {
			return
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Fatalf("no %d keys under %s after a minute", n, prefix)
}

// Mutex opens a registry of run as host (closed at the test's end) and
// returns its lock name.
func Mutex(t testing.TB, cli *clientv3.Client, run, host, name string) *etcdreg.Mutex {
	t.Helper()
	reg, err := etcdreg.Open(context.Background(), cli, run, etcdreg.Options{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	mu, err := reg.Mutex(name)
	if err != nil {
		t.Fatal(err)
	}
	return mu
}
