package etcdreg

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Finding kinds.
const (
	DeadHolder  = "dead-holder"
	LostLock    = "lost-lock"
	Cycle       = "cycle"
	StuckHolder = "stuck-holder"
)

func rank(kind string) int {
	return map[string]int{DeadHolder: 0, LostLock: 1, Cycle: 2, StuckHolder: 3}[kind]
}

// DiagnoseOptions configure Diagnose. The zero value gives the defaults.
type DiagnoseOptions struct {
	// LocalHost is the host name that the reader's own machine has in the
	// records: processes of that host are checked by pid and start time.
	// Default: $LOCKWATCH_HOST, else the host name.
	LocalHost string
	// StuckAfter: a live holder with waiters is stuck after holding this
	// long. Default 10s.
	StuckAfter time.Duration
	// Confirm is the pause before the second reading that confirms a cycle
	// or a stuck holder. Default 200ms.
	Confirm time.Duration
	// StackWait is how long to wait for a live process's answer to a stack
	// request. Default 2s; negative: ask for no live stacks.
	StackWait time.Duration
	// Check proves a local process alive or dead; default: /proc.
	Check func(procid.ID) procid.Status
}

func (o DiagnoseOptions) withDefaults() DiagnoseOptions {
	if o.LocalHost == "" {
		o.LocalHost = os.Getenv(EnvHost)
	}
	if o.LocalHost == "" {
		o.LocalHost, _ = os.Hostname()
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10 * time.Second
	}
	if o.Confirm <= 0 {
		o.Confirm = 200 * time.Millisecond
	}
	if o.StackWait == 0 {
		o.StackWait = 2 * time.Second
	}
	if o.Check == nil {
		o.Check = func(id procid.ID) procid.Status {
			st, _ := proc.Check(procid.ID{PID: id.PID, Start: id.Start})
			return st
		}
	}
	return o
}

// A Party is a goroutine of a process of the run, on some host.
type Party struct {
	procid.ID
	Goroutine int64            `json:"goroutine"`
	Role      string           `json:"role,omitempty"`
	State     string           `json:"state"` // alive, dead, zombie, reused, expired, exited, unknown
	Alive     bool             `json:"alive"`
	Since     time.Time        `json:"since,omitzero"`
	For       time.Duration    `json:"for_ns"`
	Where     *stackdump.Frame `json:"where,omitempty"`
	Lease     int64            `json:"lease,omitempty"`
}

// Label is "pid P on host H [role]".
func (p Party) Label() string {
	s := fmt.Sprintf("pid %d on %s", p.PID, p.Host)
	if p.Role != "" {
		s += " [" + p.Role + "]"
	}
	return s
}

// A Step is a goroutine of a cycle and the lock it waits for.
type Step struct {
	Party
	WaitsFor string `json:"waits_for"`
}

// A Finding is one thing wrong with the run, with its proof.
type Finding struct {
	Kind    string  `json:"kind"`
	Lock    string  `json:"lock"`
	Holder  *Party  `json:"holder,omitempty"`  // the holder at fault (lost-lock: the one that lost it)
	Now     *Party  `json:"now,omitempty"`     // lost-lock: who holds the lock now
	Waiters []Party `json:"waiters,omitempty"` // who waits for Lock
	Cycle   []Step  `json:"cycle,omitempty"`
	// LeaseLeft: dead-holder whose lease still runs: how long until etcd
	// deletes its owner key (-1 if unknown; 0 if already expired).
	LeaseLeft time.Duration `json:"lease_left_ns"`
	Proof     string        `json:"proof"`
	Doing     string        `json:"doing,omitempty"` // stuck-holder: its goroutine now
	Summary   string        `json:"summary"`
	Next      string        `json:"next"`

	key string
}

// A Diagnosis is a run's findings with the snapshot they come from.
type Diagnosis struct {
	Snapshot *Snapshot
	Findings []Finding
	// Status of each process, by its ID.
	Status map[procid.ID]procid.Status
	// Live goroutine stacks obtained from processes, by ID.
	Live map[procid.ID]*stackdump.Snapshot
	// Notes say what could not be seen.
	Notes []string
}

// Diagnose reads run and finds dead holders, lost locks, cycles and stuck
// holders. Cycles and stuck holders are confirmed by a second reading.
func Diagnose(ctx context.Context, cli *clientv3.Client, run string, opts DiagnoseOptions) (*Diagnosis, error) {
	opts = opts.withDefaults()
	s, err := Read(ctx, cli, run)
	if err != nil {
		return nil, err
	}
	d := analyze(s, opts)
	needConfirm := false
	for _, f := range d.Findings {
		if f.Kind == Cycle || f.Kind == StuckHolder {
			needConfirm = true
		}
	}
	if needConfirm {
		select {
		case <-time.After(opts.Confirm):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s2, err := Read(ctx, cli, run)
		if err != nil {
			return nil, err
		}
		d2 := analyze(s2, opts)
		seen := map[string]bool{}
		for _, f := range d.Findings {
			seen[f.key] = true
		}
		var kept []Finding
		for _, f := range d2.Findings {
			if f.Kind != Cycle && f.Kind != StuckHolder || seen[f.key] {
				kept = append(kept, f)
			}
		}
		d2.Findings = kept
		d = d2
	}
	if opts.StackWait > 0 {
		d.liveStacks(ctx, cli, run, opts)
	}
	return d, nil
}

// liveStacks asks each live holder and waiter involved in a finding for
// its goroutines, and fills in what a stuck holder is doing.
func (d *Diagnosis) liveStacks(ctx context.Context, cli *clientv3.Client, run string, opts DiagnoseOptions) {
	d.Live = map[procid.ID]*stackdump.Snapshot{}
	want := map[procid.ID]bool{}
	for _, f := range d.Findings {
		for _, p := range f.parties() {
			if p.Alive {
				want[p.ID] = true
			}
		}
	}
	ids := make([]procid.ID, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	type res struct {
		id   procid.ID
		snap *stackdump.Snapshot
		err  error
	}
	ch := make(chan res, len(ids))
	for _, id := range ids {
		go func() {
			c, cancel := context.WithTimeout(ctx, opts.StackWait)
			defer cancel()
			snap, _, err := RequestStacks(c, cli, run, id)
			ch <- res{id, snap, err}
		}()
	}
	for range ids {
		r := <-ch
		if r.err != nil {
			d.Notes = append(d.Notes, fmt.Sprintf("%s: no live stacks (%v); its recorded acquire stacks are shown", r.id, r.err))
			continue
		}
		d.Live[r.id] = r.snap
	}
	sort.Strings(d.Notes)
	for i := range d.Findings {
		f := &d.Findings[i]
		if f.Kind != StuckHolder || f.Holder == nil {
			continue
		}
		if snap := d.Live[f.Holder.ID]; snap != nil {
			if g, ok := snap.Goroutine(f.Holder.Goroutine); ok {
				f.Doing = doing(g)
			}
		}
	}
}

func doing(g stackdump.Goroutine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "goroutine %d [%s]", g.ID, g.State)
	for i, fr := range g.Frames {
		if i == 3 {
			b.WriteString(" ...")
			break
		}
		fn := fr.Func
		if j := strings.LastIndexByte(fn, '/'); j >= 0 {
			fn = fn[j+1:]
		}
		b.WriteString(" <- " + fn)
	}
	return b.String()
}

func (f Finding) parties() []Party {
	var ps []Party
	if f.Holder != nil {
		ps = append(ps, *f.Holder)
	}
	if f.Now != nil {
		ps = append(ps, *f.Now)
	}
	ps = append(ps, f.Waiters...)
	for _, s := range f.Cycle {
		ps = append(ps, s.Party)
	}
	return ps
}

type gkey struct {
	id procid.ID
	g  int64
}

// analyze builds the findings of one snapshot.
func analyze(s *Snapshot, opts DiagnoseOptions) *Diagnosis {
	d := &Diagnosis{Snapshot: s, Status: map[procid.ID]procid.Status{}}
	procs := map[procid.ID]Process{}
	for _, p := range s.Processes {
		procs[p.ID] = p
	}
	// Liveness: a local process by /proc (pid and start time); any other
	// by its lease: alive while its alive key exists.
	status := func(id procid.ID) procid.Status {
		if st, ok := d.Status[id]; ok {
			return st
		}
		p, known := procs[id]
		var st procid.Status
		switch {
		case id.Host == opts.LocalHost:
			st = opts.Check(id)
		case known && p.Alive:
			st = procid.Alive
		default:
			st = procid.Expired
		}
		d.Status[id] = st
		return st
	}
	for _, p := range s.Processes {
		status(p.ID)
	}
	party := func(id procid.ID, g int64, since time.Time, stack uint64) Party {
		st := status(id)
		pt := Party{ID: id, Goroutine: g, State: st.String(), Alive: st == procid.Alive, Since: since}
		if p, ok := procs[id]; ok {
			pt.Role = p.Role
			if !p.Exited.IsZero() && st != procid.Alive {
				pt.State = "exited"
			}
		}
		if !since.IsZero() {
			pt.For = s.Taken.Sub(since)
		}
		if fs, ok := s.Stack(id, stack); ok {
			if f, ok := callSite(fs); ok {
				pt.Where = &f
			}
		}
		return pt
	}
	waitersOf := map[string][]Party{}
	waitsFor := map[gkey]string{}
	for _, w := range s.Waiters {
		waitersOf[w.Lock] = append(waitersOf[w.Lock], party(w.ID, w.Goroutine, w.Since, w.Stack))
		waitsFor[gkey{w.ID, w.Goroutine}] = w.Lock
	}
	holderOf := map[string]gkey{}
	for _, l := range s.Locks {
		if l.Owner != nil {
			holderOf[l.Name] = gkey{l.Owner.ID, l.Owner.Goroutine}
		}
	}

	inCycle := map[string]bool{}
	for _, c := range cycles(waitsFor, holderOf) {
		var steps []Step
		var names []string
		for _, k := range c {
			var since time.Time
			var stack uint64
			for _, w := range s.Waiters {
				if w.ID == k.id && w.Goroutine == k.g {
					since, stack = w.Since, w.Stack
				}
			}
			steps = append(steps, Step{Party: party(k.id, k.g, since, stack), WaitsFor: waitsFor[k]})
			inCycle[waitsFor[k]] = true
		}
		hosts := map[string]bool{}
		for _, st := range steps {
			names = append(names, fmt.Sprintf("%s goroutine %d waits for %q", st.Label(), st.Goroutine, st.WaitsFor))
			hosts[st.Host] = true
		}
		across := ""
		if len(hosts) > 1 {
			across = fmt.Sprintf(" across %d hosts", len(hosts))
		}
		d.Findings = append(d.Findings, Finding{Kind: Cycle, Lock: steps[0].WaitsFor, Cycle: steps, LeaseLeft: -1,
			Summary: fmt.Sprintf("%d goroutines wait for each other%s: %s, each held by the next", len(steps), across, strings.Join(names, "; ")),
			Proof:   "the owner keys and waiter records, read at one etcd revision and again after a pause, form a loop; every lease in it is alive",
			Next:    "take the locks in one global order in every process (or use TryLock and back off); the stacks below show where each was taken",
			key:     "cycle " + strings.Join(names, "|")})
	}

	lostSeen := map[string]bool{}
	for _, lr := range s.Lost {
		for _, l := range s.Locks {
			if l.Name != lr.Lock {
				continue
			}
			st := status(lr.ID)
			if st != procid.Alive {
				continue // it died after: its lease (and this record) goes soon
			}
			f := lostFinding(l, party(lr.ID, lr.Goroutine, lr.Since, lr.Stack), lr.Noticed, waitersOf[l.Name], party)
			lostSeen[l.Name+" "+lr.ID.String()] = true
			d.Findings = append(d.Findings, f)
		}
	}

	for _, l := range s.Locks {
		if l.Holder == nil {
			continue
		}
		h := l.Holder
		hp := party(h.ID, h.Goroutine, h.Since, h.Stack)
		hp.Lease = h.Lease
		st := status(h.ID)
		waiters := waitersOf[l.Name]
		switch {
		case st.Dead():
			f := Finding{Kind: DeadHolder, Lock: l.Name, Holder: &hp, Waiters: waiters, LeaseLeft: l.LeaseTTL}
			how := st.String()
			if h.ID.Host == opts.LocalHost {
				f.Proof = fmt.Sprintf("pid %d with start time %d is %s on this host (checked in /proc)", h.ID.PID, h.ID.Start, st)
			}
			if l.Expired() {
				f.LeaseLeft = 0
				how = "died: its lease expired"
				if f.Proof == "" {
					f.Proof = fmt.Sprintf("its lease %x expired (etcd deleted the owner key) while its holder record, written at revision %d, still says it holds the lock, and the process has no live lease", h.Lease, l.HolderRev)
					hp.State = procid.Expired.String()
				} else {
					f.Proof += fmt.Sprintf("; its lease %x has expired too", h.Lease)
				}
			}
			f.Summary = fmt.Sprintf("%s (%s) holds %q%s; %s", hp.Label(), how, l.Name, heldFor(hp), waitersPhrase(len(waiters)))
			switch {
			case l.Expired():
				f.Next = fmt.Sprintf("find why %s died holding %q (its acquire stack is below); Stall waiters never take it: end the run, or let a Recover waiter take it and repair what it protected", hp.Label(), l.Name)
			case l.LeaseTTL >= 0:
				f.Next = fmt.Sprintf("etcd deletes its owner key when its lease expires, in %s at most; then Stall waiters still wait and a Recover waiter takes it: find why %s died (its acquire stack is below)", l.LeaseTTL, hp.Label())
			default:
				f.Next = fmt.Sprintf("find why %s died holding %q (its acquire stack is below); its lease expires within its TTL", hp.Label(), l.Name)
			}
			f.key = "dead " + l.Name + " " + h.ID.String()
			d.Findings = append(d.Findings, f)
		case l.Expired() && st == procid.Alive:
			if lostSeen[l.Name+" "+h.ID.String()] {
				continue
			}
			d.Findings = append(d.Findings, lostFinding(l, hp, time.Time{}, waiters, party))
		case l.Owner != nil && st == procid.Alive && len(waiters) > 0 && !inCycle[l.Name] && hp.For >= opts.StuckAfter:
			if _, waits := waitsFor[gkey{h.ID, h.Goroutine}]; waits {
				continue // it waits for another lock: a chain, reported where it ends
			}
			d.Findings = append(d.Findings, Finding{Kind: StuckHolder, Lock: l.Name, Holder: &hp, Waiters: waiters, LeaseLeft: l.LeaseTTL,
				Summary: fmt.Sprintf("%s has held %q for %s and is alive (its lease is kept fresh); %s", hp.Label(), l.Name, hp.For.Round(time.Millisecond), waitersPhrase(len(waiters))),
				Proof:   fmt.Sprintf("the same holder record (revision %d) in two readings; its lease %x is alive", l.HolderRev, h.Lease),
				Next:    fmt.Sprintf("look at what goroutine %d of %s is doing (its live stack below): a critical section that blocks on I/O, a channel or another process never ends while its lease stays alive", h.Goroutine, hp.Label()),
				key:     fmt.Sprintf("stuck %s %d", l.Name, l.HolderRev)})
		}
	}
	sort.SliceStable(d.Findings, func(i, j int) bool {
		if rank(d.Findings[i].Kind) != rank(d.Findings[j].Kind) {
			return rank(d.Findings[i].Kind) < rank(d.Findings[j].Kind)
		}
		return d.Findings[i].Lock < d.Findings[j].Lock
	})
	return d
}

func lostFinding(l Lock, lost Party, noticed time.Time, waiters []Party, party func(procid.ID, int64, time.Time, uint64) Party) Finding {
	f := Finding{Kind: LostLock, Lock: l.Name, Holder: &lost, Waiters: waiters, LeaseLeft: -1}
	nowWho := "nobody holds it now"
	if l.Holder != nil && l.Holder.ID != lost.ID {
		now := party(l.Holder.ID, l.Holder.Goroutine, l.Holder.Since, l.Holder.Stack)
		f.Now = &now
		nowWho = fmt.Sprintf("%s holds it now (goroutine %d, since %s)", now.Label(), now.Goroutine, now.Since.Format("15:04:05.000"))
	} else if l.Owner == nil {
		nowWho = "nobody holds it now (the record still names it; Stall waiters wait)"
	}
	f.Summary = fmt.Sprintf("%s lost %q: its lease expired while it held it, and it still runs its critical section (goroutine %d, since %s); %s",
		lost.Label(), l.Name, lost.Goroutine, lost.Since.Format("15:04:05.000"), nowWho)
	if !noticed.IsZero() {
		f.Proof = fmt.Sprintf("the process itself recorded at %s that its lease was gone while it held the lock, and has a live lease again", noticed.Format("15:04:05.000"))
	} else {
		f.Proof = "etcd deleted the owner key with the lease while the holder record still names the process, and the process is alive"
	}
	f.Next = fmt.Sprintf("what %q protects may have been changed by two holders at once: check it; find why %s stopped renewing its lease (a pause, GC, a partition), give it a longer TTL, and make its writes conditional on the lock (a fencing revision)", l.Name, lost.Label())
	f.key = "lost " + l.Name + " " + lost.ID.String()
	return f
}

func heldFor(p Party) string {
	if p.For <= 0 {
		return ""
	}
	return " for " + p.For.Round(time.Millisecond).String()
}

func waitersPhrase(n int) string {
	switch n {
	case 0:
		return "nobody waits for it yet"
	case 1:
		return "1 goroutine waits for it"
	}
	return fmt.Sprintf("%d goroutines wait for it", n)
}

// cycles finds each loop of the wait-for graph once: goroutine -> lock it
// waits for -> goroutine holding it.
func cycles(waitsFor map[gkey]string, holderOf map[string]gkey) [][]gkey {
	var starts []gkey
	for k := range waitsFor {
		starts = append(starts, k)
	}
	sort.Slice(starts, func(i, j int) bool {
		if starts[i].id != starts[j].id {
			return starts[i].id.String() < starts[j].id.String()
		}
		return starts[i].g < starts[j].g
	})
	done := map[gkey]bool{}
	var out [][]gkey
	for _, start := range starts {
		if done[start] {
			continue
		}
		var path []gkey
		at := map[gkey]int{}
		cur := start
		for {
			if i, ok := at[cur]; ok {
				out = append(out, path[i:])
				break
			}
			if done[cur] {
				break
			}
			lock, ok := waitsFor[cur]
			if !ok {
				break
			}
			next, ok := holderOf[lock]
			if !ok {
				break
			}
			at[cur] = len(path)
			path = append(path, cur)
			cur = next
		}
		for _, k := range path {
			done[k] = true
		}
	}
	return out
}

// callSite is the first frame outside the Mutex's methods and the runtime:
// where the program called Lock.
func callSite(fs []stackdump.Frame) (stackdump.Frame, bool) {
	for _, f := range fs {
		if strings.HasPrefix(f.Func, "runtime.") || strings.Contains(f.Func, "/etcd/etcdreg.(*Mutex)") {
			continue
		}
		return f, true
	}
	return stackdump.Frame{}, false
}
