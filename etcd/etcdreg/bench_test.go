package etcdreg

import (
	"context"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
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
//	GOWORK=off GOWORK=off go tool -modfile=../tools/go.mod benchstat -col /impl etcd.txt
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
		before, cpu0 := rpcs.Load(), cpuTime()
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
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-us/op")
	})
	b.Run("impl=concurrency", func(b *testing.B) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		mu := concurrency.NewMutex(s, "/bare/q")
		before, cpu0 := rpcs.Load(), cpuTime()
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
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-us/op")
	})
}

// cpuTime is this process's CPU time (user and system) so far, in
// nanoseconds: the client and the embedded server together, less noisy
// than wall time on a shared machine.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkAttach is lockwatch's diagnosis (report through
// etcdsrc, as attach makes it) of a run of 16 processes on 4 hosts, each
// holding a lock, 8 of them also waiting for another's: one range read,
// 16 lease queries, no finding (so no second reading, no stack asked).
//
//	go test -run '^$' -bench Attach -count 6 ./etcdreg
func BenchmarkAttach(b *testing.B) {
	e := newEnv(b)
	const n = 16
	var cs []*child
	for i := range n {
		c := e.start("cmd", "host-"+strconv.Itoa(i%4))
		c.send("lock l" + strconv.Itoa(i))
		c.expect("held l" + strconv.Itoa(i))
		cs = append(cs, c)
	}
	for i := range n / 2 {
		cs[i].send("nest l" + strconv.Itoa(i) + " l" + strconv.Itoa(i+n/2))
	}
	e.waitFor("8 waiters", func(s *Snapshot) bool { return len(s.Waiters) == n/2 })
	ctx := context.Background()
	for b.Loop() {
		r, err := diagnoseRun(ctx, e.cli, e.run, "reader", time.Hour, true)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Findings) != 0 || len(r.Processes) != n {
			b.Fatalf("findings %+v, %d processes; want none, %d", r.Findings, len(r.Processes), n)
		}
	}
}

// BenchmarkLockUnlockPaired takes the two locks in turn in each iteration,
// so that both see the same load (this machine's is not steady): an
// etcdreg Lock+Unlock with the records, then a concurrency.Mutex
// Lock+Unlock, timed separately; ns/op is the pair.
//
//	go test -run '^$' -bench LockUnlockPaired -count 6 ./etcdreg
func BenchmarkLockUnlockPaired(b *testing.B) {
	srv, err := embedded.Start(filepath.Join(b.TempDir(), "etcd"))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	reg, err := Open(ctx, cli, "bench", Options{Host: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	mu, err := reg.Mutex("q")
	if err != nil {
		b.Fatal(err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	bare := concurrency.NewMutex(s, "/bare/q")
	var ours, theirs time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := mu.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := mu.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := bare.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := bare.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		theirs += time.Since(t1)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "etcdreg-ns/op")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "concurrency-ns/op")
	b.ReportMetric(float64(ours)/float64(theirs), "ratio")
}

// BenchmarkContended: 16 contenders (each a registry of its own, or a
// concurrency.Mutex session of its own) take one lock in turn, on the
// same embedded server in the same run. writes/acq is etcd revisions per
// acquisition (each write transaction is one raft proposal; reads are
// none); max-wait-ms the longest Lock; ns/op one acquisition.
//
//	go test -run '^$' -bench Contended -count 3 ./etcdreg
func BenchmarkContended(b *testing.B) {
	const n = 16
	srv, err := embedded.Start(filepath.Join(b.TempDir(), "etcd"))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	type locker struct{ lock, unlock func() error }
	run := func(b *testing.B, ls []locker) {
		rev := func() int64 {
			r, err := cli.Get(ctx, "x")
			if err != nil {
				b.Fatal(err)
			}
			return r.Header.Revision
		}
		var left atomic.Int64
		left.Store(int64(b.N))
		var maxWait atomic.Int64
		errs := make(chan error, n)
		before := rev()
		b.ResetTimer()
		for _, l := range ls {
			go func() {
				for left.Add(-1) >= 0 {
					t0 := time.Now()
					if err := l.lock(); err != nil {
						errs <- err
						return
					}
					w := int64(time.Since(t0))
					for old := maxWait.Load(); w > old && !maxWait.CompareAndSwap(old, w); old = maxWait.Load() {
					}
					if err := l.unlock(); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range ls {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(rev()-before-1)/float64(b.N), "writes/acq")
		b.ReportMetric(float64(maxWait.Load())/1e6, "max-wait-ms")
	}
	b.Run("impl=etcdreg", func(b *testing.B) {
		var ls []locker
		for i := range n {
			reg, err := Open(ctx, cli, "bench", Options{Host: "bench-" + strconv.Itoa(i)})
			if err != nil {
				b.Fatal(err)
			}
			defer reg.Close()
			mu, err := reg.Mutex("q")
			if err != nil {
				b.Fatal(err)
			}
			ls = append(ls, locker{func() error { return mu.Lock(ctx) }, func() error { return mu.Unlock(ctx) }})
		}
		run(b, ls)
	})
	b.Run("impl=concurrency", func(b *testing.B) {
		var ls []locker
		for range n {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			mu := concurrency.NewMutex(s, "/bare/q")
			ls = append(ls, locker{func() error { return mu.Lock(ctx) }, func() error { return mu.Unlock(ctx) }})
		}
		run(b, ls)
	})
}
