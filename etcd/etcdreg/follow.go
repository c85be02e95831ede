package etcdreg

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A Follower keeps a run's records in memory, from one range read and
// then etcd's watch of the run's prefix: each Snapshot reads only what
// changed since the last (plus one lease query per holder), not the whole
// run. It holds at most MaxKeys keys. It is safe for concurrent use; Close
// stops it.
type Follower struct {
	cli *clientv3.Client
	run string
	p   string

	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	kvs  map[string]*mvccpb.KeyValue
	rev  int64
	more bool  // more than MaxKeys keys: the rest are not followed
	err  error // why the follower could not read the run lately
}

// Follow reads run once and follows its changes until Close.
func Follow(ctx context.Context, cli *clientv3.Client, run string) (*Follower, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	f := &Follower{cli: cli, run: run, p: p, done: make(chan struct{})}
	if err := f.load(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.follow(wctx)
	return f, nil
}

// load reads the whole run (at the start, and after the watch lost its
// history: a compaction).
func (f *Follower) load(ctx context.Context) error {
	resp, err := f.cli.Get(ctx, f.p, clientv3.WithPrefix(), clientv3.WithLimit(MaxKeys))
	if err != nil {
		return unreachable("read run "+f.run, err)
	}
	kvs := make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv
	}
	f.mu.Lock()
	f.kvs, f.rev, f.more, f.err = kvs, resp.Header.Revision, resp.More, nil
	f.mu.Unlock()
	return nil
}

func (f *Follower) follow(ctx context.Context) {
	defer close(f.done)
	for ctx.Err() == nil {
		f.mu.Lock()
		from := f.rev + 1
		f.mu.Unlock()
		for wr := range f.cli.Watch(clientv3.WithRequireLeader(ctx), f.p, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			if err := wr.Err(); err != nil {
				f.mu.Lock()
				f.err = unreachable("follow run "+f.run, err)
				f.mu.Unlock()
				if wr.CompactRevision != 0 {
					break // the history is gone: read the run again
				}
				continue
			}
			f.apply(wr.Events, wr.Header.Revision)
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond): // the watch ended: etcd unreachable, or compacted
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := f.load(lctx); err != nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
		}
		cancel()
	}
}

func (f *Follower) apply(evs []*clientv3.Event, rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		k := string(ev.Kv.Key)
		switch ev.Type {
		case mvccpb.DELETE:
			delete(f.kvs, k)
		default:
			if _, ok := f.kvs[k]; !ok && len(f.kvs) >= MaxKeys {
				f.more = true
				continue
			}
			f.kvs[k] = ev.Kv
		}
	}
	f.rev, f.err = rev, nil
}

// errFollowerClosed is Snapshot's error after Close.
var errFollowerClosed = errors.New("etcdreg: follower closed")

// Snapshot returns the run as of the last change seen. Its error wraps
// ErrUnreachable while the watch cannot reach etcd.
func (f *Follower) Snapshot(ctx context.Context) (*Snapshot, error) {
	select {
	case <-f.done:
		return nil, errFollowerClosed
	default:
	}
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		return nil, err
	}
	kvs := make([]*mvccpb.KeyValue, 0, len(f.kvs))
	for _, kv := range f.kvs {
		kvs = append(kvs, kv)
	}
	rev, more := f.rev, f.more
	f.mu.Unlock()
	sort.Slice(kvs, func(i, j int) bool { return string(kvs[i].Key) < string(kvs[j].Key) })
	return build(ctx, f.cli, f.run, kvs, rev, more)
}

// Close stops following.
func (f *Follower) Close() {
	f.cancel()
	<-f.done
}
