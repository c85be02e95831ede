package etcdreg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// MaxKeys bounds what Read takes from a run, so that a reader's time and
// memory stay bounded whatever the run holds.
const MaxKeys = 200_000

// A Snapshot is a run's records as of one etcd revision: read in one range
// request, so it is consistent across all keys.
type Snapshot struct {
	Run       string
	Taken     time.Time // the reader's clock
	Revision  int64     // the etcd revision read
	Truncated bool      // the run had more than MaxKeys keys; the rest were not read

	Processes []Process
	Locks     []Lock
	Waiters   []Waiter
	Lost      []Lost
	Events    []Event // by revision, oldest first

	// Bad lists records that could not be decoded, by key.
	Bad []string

	stacks map[string]map[uint64][]stackdump.Frame // by procKey
}

// Process is one process record with its lease's state.
type Process struct {
	ProcessRecord
	// Alive: its alive key exists, so etcd counts its lease as alive.
	Alive bool
	// AliveLease is the lease of its alive key (its current lease).
	AliveLease int64
}

// A Lock is one lock of the run that has records.
type Lock struct {
	Name string
	// Owner is the owner key: the lock is held while it exists. Nil when
	// free, or when the holder's lease expired.
	Owner      *OwnerRecord
	OwnerLease int64
	// LeaseTTL is what remains of the owner's lease (-1 if unknown).
	LeaseTTL time.Duration
	// Holder is the holder record, written with the owner key and kept
	// when the lease expires.
	Holder    *HolderRecord
	HolderRev int64 // the revision that wrote it (the acquiring transaction)
	// ExpiryNoted: a waiter saw the holder's lease expire and recorded it.
	ExpiryNoted bool
}

// Expired reports whether the holder's lease expired while its record
// says it holds the lock.
func (l Lock) Expired() bool { return l.Owner == nil && l.Holder != nil }

// Waiter is a waiting goroutine and the lock it waits for.
type Waiter struct {
	Lock string
	WaiterRecord
}

// Lost is a lost record and the lock it names.
type Lost struct {
	Lock string
	LostRecord
}

// Event is an event record and the revision that wrote it.
type Event struct {
	EventRecord
	Revision int64
}

// Read reads run's records from etcd, in one range request (plus one lease
// query per holder). Its error wraps ErrUnreachable when etcd could not be
// reached.
func Read(ctx context.Context, cli *clientv3.Client, run string) (*Snapshot, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(MaxKeys))
	if err != nil {
		return nil, unreachable("read run "+run, err)
	}
	s := &Snapshot{Run: run, Taken: time.Now(), Revision: resp.Header.Revision, Truncated: resp.More,
		stacks: make(map[string]map[uint64][]stackdump.Frame)}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdreg: no run %q in etcd (no key under %s): check the run's name (lockwatch run --etcd prints it, and gives it to the program as $LOCKWATCH_ETCD_RUN) and the endpoints", run, p)
	}
	locks := map[string]*Lock{}
	lock := func(name string) *Lock {
		if l, ok := locks[name]; ok {
			return l
		}
		l := &Lock{Name: name, LeaseTTL: -1}
		locks[name] = l
		return l
	}
	procs := map[string]*Process{}
	alive := map[string]int64{}
	died := map[string][]int64{} // lock -> holder revisions whose expiry was noted
	for _, kv := range resp.Kvs {
		key := string(kv.Key[len(p):])
		parts := strings.Split(key, "/")
		bad := func(err error) { s.Bad = append(s.Bad, fmt.Sprintf("%s: %v", kv.Key, err)) }
		switch {
		case parts[0] == "proc" && len(parts) == 2:
			var pr Process
			if err := decode(kv.Value, &pr.ProcessRecord); err != nil {
				bad(err)
				continue
			}
			procs[parts[1]] = &pr
		case parts[0] == "alive" && len(parts) == 2:
			alive[parts[1]] = kv.Lease
		case parts[0] == "lock" && len(parts) >= 3:
			l := lock(unesc(parts[1]))
			switch {
			case parts[2] == "owner":
				var o OwnerRecord
				if err := decode(kv.Value, &o); err != nil {
					bad(err)
					continue
				}
				l.Owner, l.OwnerLease = &o, kv.Lease
			case parts[2] == "holder":
				var h HolderRecord
				if err := decode(kv.Value, &h); err != nil {
					bad(err)
					continue
				}
				l.Holder, l.HolderRev = &h, kv.ModRevision
			case parts[2] == "died" && len(parts) == 4:
				if rev, err := strconv.ParseInt(parts[3], 10, 64); err == nil {
					died[l.Name] = append(died[l.Name], rev)
				}
			}
		case parts[0] == "wait" && len(parts) == 4:
			var w Waiter
			if err := decode(kv.Value, &w.WaiterRecord); err != nil {
				bad(err)
				continue
			}
			w.Lock = unesc(parts[1])
			lock(w.Lock)
			s.Waiters = append(s.Waiters, w)
		case parts[0] == "lost" && len(parts) == 3:
			var lr LostRecord
			if err := decode(kv.Value, &lr); err != nil {
				bad(err)
				continue
			}
			s.Lost = append(s.Lost, Lost{Lock: unesc(parts[1]), LostRecord: lr})
			lock(unesc(parts[1]))
		case parts[0] == "stack" && len(parts) == 3:
			id, err := strconv.ParseUint(parts[2], 16, 64)
			if err != nil {
				bad(err)
				continue
			}
			var sv stackValue
			if err := decode(kv.Value, &sv); err != nil {
				bad(err)
				continue
			}
			if s.stacks[parts[1]] == nil {
				s.stacks[parts[1]] = map[uint64][]stackdump.Frame{}
			}
			s.stacks[parts[1]][id] = sv.Frames
		case parts[0] == "event" && len(parts) == 3:
			var e Event
			if err := decode(kv.Value, &e.EventRecord); err != nil {
				bad(err)
				continue
			}
			e.Revision = kv.ModRevision
			s.Events = append(s.Events, e)
		}
	}
	for pk, pr := range procs {
		pr.AliveLease, pr.Alive = alive[pk]
		s.Processes = append(s.Processes, *pr)
	}
	sort.Slice(s.Processes, func(i, j int) bool { return s.Processes[i].Registered.Before(s.Processes[j].Registered) })
	for _, l := range locks {
		for _, rev := range died[l.Name] {
			l.ExpiryNoted = l.ExpiryNoted || (l.Holder != nil && rev == l.HolderRev)
		}
		s.Locks = append(s.Locks, *l)
	}
	sort.Slice(s.Locks, func(i, j int) bool { return s.Locks[i].Name < s.Locks[j].Name })
	sort.Slice(s.Events, func(i, j int) bool { return s.Events[i].Revision < s.Events[j].Revision })
	sort.Slice(s.Waiters, func(i, j int) bool { return s.Waiters[i].Since.Before(s.Waiters[j].Since) })

	// What remains of each holder's lease.
	ttls := map[int64]time.Duration{}
	for i := range s.Locks {
		l := &s.Locks[i]
		if l.Owner == nil || l.OwnerLease == 0 {
			continue
		}
		d, ok := ttls[l.OwnerLease]
		if !ok {
			d = -1
			if t, err := cli.TimeToLive(ctx, clientv3.LeaseID(l.OwnerLease)); err == nil && t.TTL >= 0 {
				d = time.Duration(t.TTL) * time.Second
			}
			ttls[l.OwnerLease] = d
		}
		l.LeaseTTL = d
	}
	return s, nil
}

// Stack returns the frames of stack id recorded by process id.
func (s *Snapshot) Stack(id procid.ID, stack uint64) ([]stackdump.Frame, bool) {
	fs, ok := s.stacks[procKey(id)][stack]
	return fs, ok
}

// Process returns the process record of id.
func (s *Snapshot) Process(id procid.ID) (Process, bool) {
	for _, p := range s.Processes {
		if p.ID == id {
			return p, true
		}
	}
	return Process{}, false
}

// RequestStacks asks process id of run for its goroutines, through etcd:
// it puts P/req/PROC and waits, until ctx ends, for the process's answer
// in P/ans/PROC.
func RequestStacks(ctx context.Context, cli *clientv3.Client, run string, id procid.ID) (*stackdump.Snapshot, bool, error) {
	p, err := Prefix(run)
	if err != nil {
		return nil, false, err
	}
	k := keys{p}
	pk := procKey(id)
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	put, err := cli.Put(ctx, k.req(pk), nonce)
	if err != nil {
		return nil, false, unreachable("ask "+id.String()+" for its stacks", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Delete(dctx, k.req(pk))
		cancel()
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, k.ans(pk), clientv3.WithRev(put.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return nil, false, unreachable("wait for the stacks of "+id.String(), err)
		}
		for _, ev := range wr.Events {
			var a answer
			if ev.Type != clientv3.EventTypePut || decode(ev.Kv.Value, &a) != nil || a.Request != nonce {
				continue
			}
			snap, err := stackdump.Parse(strings.NewReader(a.Dump))
			if err != nil && snap == nil {
				return nil, a.Truncated, err
			}
			return snap, a.Truncated, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("etcdreg: %s did not answer the stack request: %w", id, err)
	}
	return nil, false, errors.New("etcdreg: watch ended")
}
