package etcdreg

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"

	"github.com/lockwatch/lockwatch/etcd/embedded"
)

// BenchmarkLockUnlock compares an uncontended Lock+Unlock with the records
// (etcdreg) with etcd's own concurrency.Mutex, on the same embedded server
// in the same run. rt/op counts the unary RPCs each makes per
// Lock+Unlock (the lease keep-alive stream is not counted).
//
//	go test -run '^$' -bench LockUnlock -count 6 ./etcdreg | tee etcd.txt
//	go tool -modfile=../tools/go.mod benchstat -col /impl etcd.txt
func BenchmarkLockUnlock(b *testing.B) {
	srv, err := embedded.Start(filepath.Join(b.TempDir(), "etcd"))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	var rpcs atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		rpcs.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()

	b.Run("impl=etcdreg", func(b *testing.B) {
		reg, err := Open(ctx, cli, "bench", Options{Host: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		defer reg.Close()
		mu, err := reg.Mutex("q")
		if err != nil {
			b.Fatal(err)
		}
		before := rpcs.Load()
		b.ResetTimer()
		for b.Loop() {
			if err := mu.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := mu.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rpcs.Load()-before)/float64(b.N), "rt/op")
	})
	b.Run("impl=concurrency", func(b *testing.B) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		mu := concurrency.NewMutex(s, "/bare/q")
		before := rpcs.Load()
		b.ResetTimer()
		for b.Loop() {
			if err := mu.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := mu.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rpcs.Load()-before)/float64(b.N), "rt/op")
	})
}
