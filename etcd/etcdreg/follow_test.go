package etcdreg

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// TestFollower: a Follower reads the run once, then only its changes: the
// lock taken and released by another process shows in its snapshots, as
// in Read's, with no further range read of the run.
func TestFollower(t *testing.T) {
	e := newEnv(t)
	a := e.start("cmd", "host-a")
	var ranges atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Range") || strings.HasSuffix(method, "/Txn") {
			ranges.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.srv.Endpoints(), DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	f, err := Follow(ctx, cli, e.run)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	await := func(what string, cond func(*Snapshot) bool) *Snapshot {
		t.Helper()
		deadline := time.Now().Add(patience)
		for time.Now().Before(deadline) {
			s, err := f.Snapshot(ctx)
			if err == nil && cond(s) {
				return s
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		t.Fatalf("follower: no %s after %v", what, patience)
		return nil
	}
	a.send("lock q")
	tok := token(t, a.expect("held q"))
	s := await("holder", func(s *Snapshot) bool { h := lockOf(s, "q").Holder; return h != nil && h.Token == tok })
	if r := e.waitFor("the same", func(*Snapshot) bool { return true }); len(r.Locks) != len(s.Locks) || lockOf(r, "q").Holder.Token != tok {
		t.Errorf("Read: %+v; follower: %+v", r.Locks, s.Locks)
	}
	a.send("unlock q")
	a.expect("unlocked q")
	await("lock free", func(s *Snapshot) bool { return lockOf(s, "q").Holder == nil })
	if n := ranges.Load(); n != 1 {
		t.Errorf("%d range reads of the run; want 1, the first", n)
	}
}
