package etcdreg

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// BenchmarkLockUnlock compares an uncontended Lock+Unlock with the records
// (etcdreg) with etcd's own concurrency.Mutex, on the same embedded server
// in the same run. rt/op counts the unary RPCs each makes per
// Lock+Unlock (the lease keep-alive stream is not counted), req-B/op the
// bytes of their requests (as encoded: a write's request is what its raft
// proposal carries), writes/op etcd's revisions.
//
//	go test -run '^$' -bench LockUnlock -count 6 ./etcdreg | tee etcd.txt
//	GOWORK=off go tool -modfile=../tools/go.mod benchstat -col /impl etcd.txt
func BenchmarkLockUnlock(b *testing.B) {
	srv, err := embedded.Start(filepath.Join(b.TempDir(), "etcd"))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	var rpcs, reqBytes atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		rpcs.Add(1)
		if m, ok := req.(proto.Message); ok {
			reqBytes.Add(int64(proto.Size(m)))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	rev := func() int64 {
		r, err := cli.Get(ctx, "x")
		if err != nil {
			b.Fatal(err)
		}
		return r.Header.Revision
	}
	// report reports the figures since before (rpcs, bytes, revision, CPU).
	type mark struct{ rpcs, bytes, rev, cpu int64 }
	now := func() mark { return mark{rpcs.Load(), reqBytes.Load(), rev(), cpuTime()} }
	report := func(b *testing.B, m0 mark) {
		m1 := now()
		n := float64(b.N)
		b.ReportMetric(float64(m1.rpcs-m0.rpcs-1)/n, "rt/op") // less rev()'s own
		b.ReportMetric(float64(m1.bytes-m0.bytes)/n, "req-B/op")
		b.ReportMetric(float64(m1.rev-m0.rev)/n, "writes/op")
		b.ReportMetric(float64(m1.cpu-m0.cpu)/n/1e3, "cpu-us/op")
	}

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
		m0 := now()
		b.ResetTimer()
		for b.Loop() {
			if err := mu.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := mu.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
		report(b, m0)
	})
	b.Run("impl=concurrency", func(b *testing.B) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		mu := concurrency.NewMutex(s, "/bare/q")
		m0 := now()
		b.ResetTimer()
		for b.Loop() {
			if err := mu.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := mu.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
		report(b, m0)
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
// etcdreg Lock+Unlock with the records and a concurrency.Mutex
// Lock+Unlock, in an order drawn at random each iteration (the server's
// work that follows an answer, and its periodic work, fall in whichever
// is measured next), timed separately, in wall time and in the process's
// CPU time (client and embedded server); ns/op is the pair.
//
//	go test -run '^$' -bench LockUnlockPaired -count 6 ./etcdreg
func BenchmarkLockUnlockPaired(b *testing.B) {
	p := newPairBench(b)
	var ours, theirs time.Duration
	var oursCPU, theirsCPU int64
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		for _, k := range rng.Perm(2) {
			t0, c0 := time.Now(), cpuTime()
			if k == 0 {
				p.etcdreg()
				ours += time.Since(t0)
				oursCPU += cpuTime() - c0
			} else {
				p.concurrency()
				theirs += time.Since(t0)
				theirsCPU += cpuTime() - c0
			}
		}
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "etcdreg-ns/op")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "concurrency-ns/op")
	b.ReportMetric(float64(ours)/float64(theirs), "ratio")
	b.ReportMetric(float64(oursCPU)/float64(b.N)/1e3, "etcdreg-cpu-us/op")
	b.ReportMetric(float64(theirsCPU)/float64(b.N)/1e3, "concurrency-cpu-us/op")
	b.ReportMetric(float64(oursCPU)/float64(theirsCPU), "cpu-ratio")
}

// pairBench is an embedded server, an etcdreg lock and a concurrency.Mutex
// (a session of its own) on it.
type pairBench struct {
	b    *testing.B
	ctx  context.Context
	reg  *Registry
	mu   *Mutex
	bare *concurrency.Mutex
	s    *concurrency.Session
}

func newPairBench(b *testing.B) *pairBench {
	srv, err := embedded.Start(filepath.Join(b.TempDir(), "etcd"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	reg, err := Open(ctx, cli, "bench", Options{Host: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close() })
	mu, err := reg.Mutex("q")
	if err != nil {
		b.Fatal(err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return &pairBench{b: b, ctx: ctx, reg: reg, mu: mu, bare: concurrency.NewMutex(s, "/bare/q"), s: s}
}

func (p *pairBench) etcdreg() {
	if err := p.mu.Lock(p.ctx); err != nil {
		p.b.Fatal(err)
	}
	if err := p.mu.Unlock(p.ctx); err != nil {
		p.b.Fatal(err)
	}
}

func (p *pairBench) concurrency() {
	if err := p.bare.Lock(p.ctx); err != nil {
		p.b.Fatal(err)
	}
	if err := p.bare.Unlock(p.ctx); err != nil {
		p.b.Fatal(err)
	}
}

// BenchmarkLockUnlockParts says where the cost of an uncontended etcdreg
// Lock+Unlock is, beside concurrency.Mutex's, in the process's CPU time
// (client and embedded server), the four taken in an order drawn at random
// each iteration, each reported as its ratio to concurrency.Mutex's:
// etcdreg itself; txns, the same two transactions with the same keys and
// record sizes, sent without etcdreg's own work (its records, stack,
// queue bookkeeping and events); noshadow, txns without the shadow (a
// contender key alone: its put and delete, the comparison of the
// contenders alone, no queueing branch for it).
//
//	go test -run '^$' -bench LockUnlockParts -benchtime 800x -count 4 ./etcdreg
func BenchmarkLockUnlockParts(b *testing.B) {
	p := newPairBench(b)
	lease := p.s.Lease()
	rec := HolderRecord{ID: p.reg.self, Goroutine: 12, Stack: 1, Since: time.Now(), Lease: int64(lease), Policy: "stall"}
	val := appendHolder(nil, &rec)
	held := append([]byte(nil), val...)
	held[flagsAt] |= flagHeld
	txns := func(name string, shadow bool) func() {
		m, err := p.reg.Mutex(name)
		if err != nil {
			b.Fatal(err)
		}
		key, sh := []byte(m.lockDir+leafName(lease, 1)), []byte(m.shadowDir+leafName(lease, 1))
		return func() {
			lock := &pb.TxnRequest{Compare: m.free,
				Success: []*pb.RequestOp{putReq(key, val, lease, false), putReq(sh, held, 0, false)},
				Failure: []*pb.RequestOp{putReq(key, val, lease, true), putReq(sh, nil, 0, false)}}
			unlock := []*pb.RequestOp{deleteReq(key), deleteReq(sh)}
			if !shadow {
				lock = &pb.TxnRequest{Compare: m.free[:1], Success: lock.Success[:1], Failure: lock.Failure[:1]}
				unlock = unlock[:1]
			}
			resp, err := p.reg.txn(p.ctx, lock)
			if err != nil || !resp.Succeeded {
				b.Fatalf("lock %s: %v", name, err)
			}
			resp, err = p.reg.txn(p.ctx, &pb.TxnRequest{Success: unlock})
			if err != nil || resp.Responses[0].GetResponseDeleteRange().GetDeleted() != 1 {
				b.Fatalf("unlock %s: %v", name, err)
			}
		}
	}
	parts := []struct {
		name string
		f    func()
	}{
		{"concurrency", p.concurrency},
		{"etcdreg", p.etcdreg},
		{"txns", txns("r", true)},
		{"noshadow", txns("s", false)},
	}
	cpu := make([]int64, len(parts))
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		for _, k := range rng.Perm(len(parts)) {
			c0 := cpuTime()
			parts[k].f()
			cpu[k] += cpuTime() - c0
		}
	}
	for k := 1; k < len(parts); k++ {
		b.ReportMetric(float64(cpu[k])/float64(cpu[0]), parts[k].name+"-cpu-ratio")
	}
	b.ReportMetric(float64(cpu[0])/float64(b.N)/1e3, "concurrency-cpu-us/op")
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

// BenchmarkAttachLifetimes is lockwatch's diagnosis (as attach makes it)
// of a run after 10,000 process lifetimes, beside the same diagnosis of a
// run that never had more than its live processes: each lifetime's records
// are written directly, as a process leaves them (its process and alive
// records, a stack, 8 events, a hold of lock "q": its contender key and
// shadow), then deleted, as its Close (or the pruning of the next Open)
// deletes them. What is left to read is the live processes' records (4,
// each holding a lock, one more waiting); what the lifetimes leave in etcd
// is their deleted key names, kept in etcd's index until a compaction,
// which every read of a prefix walks: compacted=no leaves them, as a
// cluster without auto-compaction would; compacted=yes compacts etcd's
// history once they are written, as auto-compaction does. B/op bounds the
// diagnosis's memory (all it allocates).
//
//	go test -run '^$' -bench AttachLifetimes -benchtime 20x -count 3 -benchmem ./etcdreg
func BenchmarkAttachLifetimes(b *testing.B) {
	const lifetimes = 10000
	ctx := context.Background()
	for _, bc := range []struct {
		n       int
		compact bool
	}{{0, false}, {lifetimes, false}, {lifetimes, true}} {
		name := "lifetimes=" + strconv.Itoa(bc.n)
		if bc.n > 0 {
			name += fmt.Sprintf("/compacted=%s", map[bool]string{false: "no", true: "yes"}[bc.compact])
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			p, _ := Prefix(e.run)
			k := keys{p}
			writeLifetimes(b, e.cli, k, bc.n)
			if bc.compact {
				resp, err := e.cli.Get(ctx, "x")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
					b.Fatal(err)
				}
			}
			var regs []*Registry
			for i := range 5 {
				reg, err := Open(ctx, e.cli, e.run, Options{Host: "live-" + strconv.Itoa(i)})
				if err != nil {
					b.Fatal(err)
				}
				defer reg.Close()
				regs = append(regs, reg)
			}
			for i, reg := range regs[:4] {
				mu, _ := reg.Mutex("l" + strconv.Itoa(i))
				if err := mu.Lock(ctx); err != nil {
					b.Fatal(err)
				}
			}
			waiter, _ := regs[4].Mutex("l0")
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() { _ = waiter.Lock(wctx) }()
			e.waitFor("a waiter", func(s *Snapshot) bool { return len(s.Waiters) == 1 })
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r, err := diagnoseRun(ctx, e.cli, e.run, "reader", time.Hour, true)
				if err != nil {
					b.Fatal(err)
				}
				if len(r.Findings) != 0 || len(r.Processes) != 5 {
					b.Fatalf("findings %+v, %d processes; want none, 5", r.Findings, len(r.Processes))
				}
			}
		})
	}
}

// writeLifetimes writes, then deletes, the records n process lifetimes
// leave in a run, in transactions of at most 128 operations (etcd's
// default limit).
func writeLifetimes(b *testing.B, cli *clientv3.Client, k keys, n int) {
	ctx := context.Background()
	var ops []clientv3.Op
	flush := func(min int) {
		for len(ops) > min {
			m := len(ops)
			if m > 120 {
				m = 120
			}
			if _, err := cli.Txn(ctx).Then(ops[:m]...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[m:]
		}
	}
	now := time.Now()
	for i := range n {
		id := procid.ID{Host: "gone-" + strconv.Itoa(i%16), PID: 100000 + i, Start: uint64(i + 1)}
		pk := procKey(id)
		lease := int64(0x7000000000000000) + int64(i)
		leaf := fmt.Sprintf("%x-1", lease)
		rec := HolderRecord{ID: id, Goroutine: 1, Stack: 1, Since: now, Lease: lease, Policy: "stall"}
		ops = append(ops,
			clientv3.OpPut(k.proc(pk), mustJSON(ProcessRecord{ID: id, Role: "worker", Command: "worker --id " + strconv.Itoa(i), Lease: lease, TTL: 10, Registered: now})),
			clientv3.OpPut(k.alive(pk), fmt.Sprintf("%x", lease)),
			clientv3.OpPut(k.stack(pk, 1), mustJSON(stackValue{Frames: []stackdump.Frame{{Func: "main.work", File: "main.go", Line: 42}}})),
			clientv3.OpPut(k.lockDir("q")+leaf, encodeHolder(&rec)),
			clientv3.OpPut(k.shadowDir("q")+leaf, encodeHolder(&rec)),
		)
		for s := range 8 {
			ops = append(ops, clientv3.OpPut(k.event(pk, uint64(s)), mustJSON(EventRecord{Seq: uint64(s), Kind: EventRelease, Lock: "q", ID: id, Goroutine: 1, Stack: 1, Time: now, Token: int64(i)})))
		}
		flush(120)
	}
	flush(0)
	for i := range n {
		id := procid.ID{Host: "gone-" + strconv.Itoa(i%16), PID: 100000 + i, Start: uint64(i + 1)}
		pk := procKey(id)
		leaf := fmt.Sprintf("%x-1", int64(0x7000000000000000)+int64(i))
		ops = append(ops,
			clientv3.OpDelete(k.lockDir("q")+leaf), clientv3.OpDelete(k.shadowDir("q")+leaf),
			clientv3.OpDelete(k.alive(pk)),
			clientv3.OpDelete(k.p+"event/"+pk+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(k.p+"stack/"+pk+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(k.proc(pk)))
		flush(120)
	}
	flush(0)
}
