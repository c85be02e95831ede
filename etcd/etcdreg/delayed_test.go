package etcdreg

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// freezeProxy forwards TCP to an etcd endpoint. Once frozen, the bytes the
// client sends on the connections open then are held back (not forwarded);
// cut closes those connections' client side only (the client sees its
// requests fail); flush then delivers the held bytes to the server on the
// old upstream connections: a request the client gave up on arrives late.
type freezeProxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	pairs    []*pair
	replied  chan struct{}
}

type pair struct {
	client, server net.Conn
	held           bytes.Buffer
	frozen         bool
	flushed        bool
}

func newFreezeProxy(t *testing.T, upstream string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, upstream: upstream, replied: make(chan struct{}, 1)}
	t.Cleanup(func() {
		// Close every connection, the held-back ones too: the server's
		// graceful stop would wait for them.
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pr := range p.pairs {
			pr.client.Close()
			pr.server.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			pr := &pair{client: c, server: s}
			p.mu.Lock()
			p.pairs = append(p.pairs, pr)
			p.mu.Unlock()
			go func() { // client -> server
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						p.mu.Lock()
						if pr.frozen {
							pr.held.Write(buf[:n])
							p.mu.Unlock()
						} else {
							p.mu.Unlock()
							s.Write(buf[:n])
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server -> client
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						p.mu.Lock()
						fl := pr.flushed
						p.mu.Unlock()
						if fl {
							select {
							case p.replied <- struct{}{}:
							default:
							}
						}
						c.Write(buf[:n])
					}
					if err != nil {
						if err != io.EOF {
							c.Close()
						}
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr.frozen = true
	}
}

func (p *freezeProxy) heldContains(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		if pr.frozen && bytes.Contains(pr.held.Bytes(), b) {
			return true
		}
	}
	return false
}

func (p *freezeProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		if pr.frozen {
			pr.client.Close()
		}
	}
}

func (p *freezeProxy) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		if pr.frozen && !pr.flushed {
			pr.flushed = true
			pr.server.Write(pr.held.Bytes())
		}
	}
}

// proxiedRegistry opens a Registry whose client reaches etcd through a
// new freezeProxy.
func proxiedRegistry(t *testing.T, e *testEnv) (*freezeProxy, *Registry) {
	ep := strings.TrimPrefix(e.srv.Endpoints()[0], "http://")
	px := newFreezeProxy(t, ep)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + px.ln.Addr().String()}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	reg, err := Open(context.Background(), cli, e.run, Options{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return px, reg
}

// holdBack runs op with the proxy frozen until a request containing b is
// held back, then cuts the client's connections: op's request fails for
// its caller, and reaches etcd only at deliver. It returns op's error.
func (p *freezeProxy) holdBack(b []byte, op func() error) error {
	p.freeze()
	errc := make(chan error, 1)
	go func() { errc <- op() }()
	for !p.heldContains(b) {
		time.Sleep(5 * time.Millisecond) // polls for the request to be held back; no timing asserted
	}
	p.cut()
	return <-errc
}

// deliver sends the held-back requests to etcd and waits for an answer.
func (p *freezeProxy) deliver(t *testing.T) {
	p.flush()
	select {
	case <-p.replied:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the late request")
	}
}

// holdStands checks that hold h's key and shadow are in etcd as h took
// them: the key created at h.rev, the shadow a holder's record.
func holdStands(t *testing.T, e *testEnv, h *hold) {
	t.Helper()
	ctx := context.Background()
	k, err := e.cli.Get(ctx, h.key)
	if err != nil || len(k.Kvs) != 1 || k.Kvs[0].CreateRevision != h.rev {
		t.Errorf("the hold's key after the late request: %v (%v); want it, created at %d", k.Kvs, err, h.rev)
	}
	sh, err := e.cli.Get(ctx, h.shadow)
	var rec HolderRecord
	if err != nil || len(sh.Kvs) != 1 || sh.Kvs[0].CreateRevision != h.rev || decodeHolder(sh.Kvs[0].Value, &rec) != nil || !rec.Held {
		t.Errorf("the hold's shadow after the late request: %v (%v); want its record, Held, created at %d", sh.Kvs, err, h.rev)
	}
}

// heldBackUnlock takes lock q through a proxy, then Unlocks it with the
// request held back (its caller gets ErrUnreachable): the hold, still
// this process's, and the proxy that holds the request.
func heldBackUnlock(t *testing.T, e *testEnv) (*freezeProxy, *Mutex, *hold) {
	ctx := context.Background()
	px, reg := proxiedRegistry(t, e)
	mu, _ := reg.Mutex("q")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	h := mu.curHold()
	if err := px.holdBack([]byte(h.shadow), func() error { return mu.Unlock(ctx) }); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("the first Unlock: %v; want ErrUnreachable", err)
	}
	return px, mu, h
}

// TestDelayedUnlock: an Unlock whose request is held back in the network
// (its caller got an error and, as Unlock's doc says, called Unlock
// again) reaches etcd after the retry released the lock and after this
// process took it again. The late delete compares nothing: it must find
// no key of the new hold under its name (the name of a hold whose Unlock
// failed is never used again), so the new hold stands, its shadow too,
// and another process cannot take the lock.
func TestDelayedUnlock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	px, mu, h1 := heldBackUnlock(t, e)
	if err := mu.Unlock(ctx); err != nil {
		t.Fatalf("retried Unlock: %v", err)
	}
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := mu.curHold()
	if h2.key == h1.key {
		t.Errorf("the next hold took the name %s of the hold whose Unlock failed", h2.key)
	}
	px.deliver(t) // the first Unlock's request reaches etcd now
	holdStands(t, e, h2)
	if isClosed(mu.Done()) {
		t.Error("Done closed; the hold stands")
	}
	reg2, err := Open(ctx, e.cli, e.run, Options{Host: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	mu2, _ := reg2.Mutex("q")
	if ok, err := mu2.TryLock(ctx); ok || err != nil {
		t.Errorf("another process's TryLock: %v, %v; want false: the lock is held", ok, err)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Errorf("Unlock of the next hold: %v", err)
	}
}

// TestDelayedLockPut: a Lock whose queueing put is held back in the
// network (the put failed; Lock put again and took the lock) keeps its
// name out of use after the hold ends, so that when the first put reaches
// etcd, late, it writes no key or shadow of the process's next hold. (It
// writes the old name again, bound to the process's lease: a contender
// nobody waits for, which stays until the lease ends; see
// docs/distributed.md.)
func TestDelayedLockPut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	px, reg := proxiedRegistry(t, e)
	mu, _ := reg.Mutex("q")
	if err := px.holdBack([]byte(mu.shadowDir), func() error { return mu.Lock(ctx) }); err != nil {
		t.Fatalf("Lock, its first put held back: %v", err)
	}
	h1 := mu.curHold()
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := mu.curHold()
	if h2.key == h1.key {
		t.Errorf("the next hold took the name %s of the hold whose first put failed", h2.key)
	}
	px.deliver(t) // the first put reaches etcd now
	holdStands(t, e, h2)
	if err := mu.Unlock(ctx); err != nil {
		t.Errorf("Unlock of the next hold: %v", err)
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestFailedUnlockApplied: an Unlock that failed for its caller but was
// applied (its answer lost) released the lock: the retried Unlock, which
// finds the key gone while the lease lives, returns nil, not ErrLockLost.
func TestFailedUnlockApplied(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	px, mu, _ := heldBackUnlock(t, e)
	px.deliver(t) // applied now; its answer goes nowhere
	if err := mu.Unlock(ctx); err != nil {
		t.Errorf("retried Unlock after the first was applied: %v; want nil", err)
	}
	if mu.Token() != 0 {
		t.Errorf("Token %d after the release; want 0", mu.Token())
	}
}
