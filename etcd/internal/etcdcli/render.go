package etcdcli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Schema names the JSON report of an etcd run (docs/distributed.md).
const Schema = "lockwatch.etcd-report/v1"

// jsonReport is the JSON form of a diagnosis.
type jsonReport struct {
	Schema    string            `json:"schema"`
	Run       string            `json:"run"`
	Endpoints []string          `json:"endpoints"`
	Taken     time.Time         `json:"taken"`
	Revision  int64             `json:"revision"`
	Findings  []etcdreg.Finding `json:"findings"`
	Locks     []jsonLock        `json:"locks"`
	Waiters   []jsonWaiter      `json:"waiters"`
	Processes []jsonProc        `json:"processes"`
	Events    []etcdreg.Event   `json:"events"`
	Notes     []string          `json:"notes"`
}

type jsonLock struct {
	Name     string               `json:"name"`
	State    string               `json:"state"` // free, held, expired
	Holder   *etcdreg.Party       `json:"holder,omitempty"`
	LeaseTTL time.Duration        `json:"lease_ttl_ns"`
	Waiting  int                  `json:"waiting"`
	Revision int64                `json:"revision,omitempty"` // of the holder record
	Owner    *etcdreg.OwnerRecord `json:"owner,omitempty"`
}

type jsonWaiter struct {
	etcdreg.Party
	Lock string `json:"lock"`
}

type jsonProc struct {
	etcdreg.ProcessRecord
	State string `json:"state"`
	Alive bool   `json:"alive"` // its lease is alive in etcd
}

// view is a diagnosis laid out for printing.
type view struct {
	d         *etcdreg.Diagnosis
	endpoints []string
	locks     []jsonLock
	waiters   []jsonWaiter
	procs     []jsonProc
	events    []etcdreg.Event
}

func newView(d *etcdreg.Diagnosis, endpoints []string) *view {
	s := d.Snapshot
	v := &view{d: d, endpoints: endpoints}
	state := func(id procid.ID) string {
		if st, ok := d.Status[id]; ok {
			return st.String()
		}
		return procid.Unknown.String()
	}
	party := func(id procid.ID, g int64, since time.Time, stack uint64) *etcdreg.Party {
		p := &etcdreg.Party{ID: id, Goroutine: g, State: state(id), Alive: state(id) == "alive", Since: since}
		if pr, ok := s.Process(id); ok {
			p.Role = pr.Role
		}
		if !since.IsZero() {
			p.For = s.Taken.Sub(since)
		}
		if fs, ok := s.Stack(id, stack); ok && len(fs) > 0 {
			f := fs[0]
			p.Where = &f
		}
		return p
	}
	waiting := map[string]int{}
	for _, w := range s.Waiters {
		waiting[w.Lock]++
		v.waiters = append(v.waiters, jsonWaiter{Party: *party(w.ID, w.Goroutine, w.Since, w.Stack), Lock: w.Lock})
	}
	for _, l := range s.Locks {
		jl := jsonLock{Name: l.Name, State: "free", LeaseTTL: l.LeaseTTL, Waiting: waiting[l.Name], Owner: l.Owner}
		if l.Holder != nil {
			jl.State, jl.Revision = "held", l.HolderRev
			if l.Expired() {
				jl.State = "expired"
			}
			jl.Holder = party(l.Holder.ID, l.Holder.Goroutine, l.Holder.Since, l.Holder.Stack)
			jl.Holder.Lease = l.Holder.Lease
		}
		v.locks = append(v.locks, jl)
	}
	for _, p := range s.Processes {
		st := state(p.ID)
		if !p.Exited.IsZero() {
			st = "exited"
		}
		v.procs = append(v.procs, jsonProc{ProcessRecord: p.ProcessRecord, State: st, Alive: p.Alive})
	}
	// The recent events of the locks at fault (all locks when none is).
	fault := map[string]bool{}
	for _, f := range d.Findings {
		fault[f.Lock] = true
		for _, st := range f.Cycle {
			fault[st.WaitsFor] = true
		}
	}
	for _, e := range s.Events {
		if len(fault) == 0 || fault[e.Lock] || e.Lock == "" {
			v.events = append(v.events, e)
		}
	}
	if len(v.events) > 20 {
		v.events = v.events[len(v.events)-20:]
	}
	return v
}

func (v *view) writeJSON(w io.Writer) error {
	r := jsonReport{Schema: Schema, Run: v.d.Snapshot.Run, Endpoints: v.endpoints, Taken: v.d.Snapshot.Taken,
		Revision: v.d.Snapshot.Revision, Findings: v.d.Findings, Locks: v.locks, Waiters: v.waiters,
		Processes: v.procs, Events: v.events, Notes: v.d.Notes}
	if r.Findings == nil {
		r.Findings = []etcdreg.Finding{}
	}
	if r.Notes == nil {
		r.Notes = []string{}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(r)
}

func who(id procid.ID) string { return fmt.Sprintf("%s/%d", id.Host, id.PID) }

func (v *view) writeTable(w io.Writer) error {
	s := v.d.Snapshot
	var b strings.Builder
	fmt.Fprintf(&b, "lockwatch report: etcd run %s at %s (revision %d), %s\n", s.Run, strings.Join(v.endpoints, ","), s.Revision, s.Taken.Format("2006-01-02 15:04:05.000"))
	if len(v.d.Findings) == 0 {
		b.WriteString("no finding: no dead holder, no lost lock, no cycle, no stuck holder\n")
	}
	for _, f := range v.d.Findings {
		fmt.Fprintf(&b, "%s %s\n", strings.ToUpper(f.Kind), f.Summary)
		fmt.Fprintf(&b, "  proof: %s\n", f.Proof)
		if f.Doing != "" {
			fmt.Fprintf(&b, "  doing: %s\n", f.Doing)
		}
		fmt.Fprintf(&b, "  next: %s\n", f.Next)
	}
	for _, n := range v.d.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	section := func(title string, header []string, rows [][]string) error {
		if _, err := fmt.Fprintf(w, "\n%s\n", title); err != nil {
			return err
		}
		return report.Table(w, header, rows)
	}
	var rows [][]string
	for _, l := range v.locks {
		row := []string{l.Name, l.State, "-", "-", "-", "-", "-", "-"}
		if h := l.Holder; h != nil {
			row[2], row[3], row[4], row[5], row[6] = who(h.ID), h.State, gid(h.Goroutine), dur(h.For), where(h.Where)
			switch {
			case l.State == "expired":
				row[7] = "expired"
			case l.LeaseTTL >= 0:
				row[7] = fmt.Sprintf("%x %s", h.Lease, l.LeaseTTL)
			}
		}
		rows = append(rows, row)
	}
	if err := section("LOCKS", []string{"name", "state", "holder", "liveness", "goroutine", "held for", "acquired at", "lease ttl"}, rows); err != nil {
		return err
	}
	rows = nil
	for _, wr := range v.waiters {
		rows = append(rows, []string{who(wr.ID), wr.State, gid(wr.Goroutine), wr.Lock, dur(wr.For), where(wr.Where)})
	}
	if err := section("WAITERS", []string{"host/pid", "liveness", "goroutine", "lock", "waiting for", "where"}, rows); err != nil {
		return err
	}
	rows = nil
	for _, p := range v.procs {
		rows = append(rows, []string{p.ID.Host, strconv.Itoa(p.ID.PID), p.Role, p.State, fmt.Sprintf("%x", p.Lease), clock(p.Registered), clock(p.Exited)})
	}
	if err := section("PROCESSES", []string{"host", "pid", "role", "state", "lease", "registered", "exited"}, rows); err != nil {
		return err
	}
	if len(v.events) > 0 {
		rows = nil
		for _, e := range v.events {
			rows = append(rows, []string{clock(e.Time), e.Lock, string(e.Kind), who(e.ID), gid(e.Goroutine), strconv.FormatInt(e.Revision, 10)})
		}
		if err := section("RECENT EVENTS", []string{"time", "lock", "event", "host/pid", "goroutine", "revision"}, rows); err != nil {
			return err
		}
	}
	return v.writeStacks(w)
}

// writeStacks prints the stacks of the parties of each finding: live from
// their processes when they answered, else as recorded at the acquire.
func (v *view) writeStacks(w io.Writer) error {
	type entry struct {
		p    etcdreg.Party
		what string
	}
	var es []entry
	seen := map[string]bool{}
	add := func(p etcdreg.Party, what string) {
		k := fmt.Sprintf("%s %d", p.ID, p.Goroutine)
		if seen[k] {
			return
		}
		seen[k] = true
		es = append(es, entry{p, what})
	}
	for _, f := range v.d.Findings {
		if f.Holder != nil {
			add(*f.Holder, "holder of "+strconv.Quote(f.Lock))
		}
		if f.Now != nil {
			add(*f.Now, "holder now of "+strconv.Quote(f.Lock))
		}
		for _, p := range f.Waiters {
			add(p, "waiter of "+strconv.Quote(f.Lock))
		}
		for _, st := range f.Cycle {
			add(st.Party, "waiter of "+strconv.Quote(st.WaitsFor))
		}
	}
	if len(es) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nSTACKS\n")
	s := v.d.Snapshot
	for _, e := range es {
		frames, source := []stackdump.Frame(nil), ""
		if snap := v.d.Live[e.p.ID]; snap != nil {
			if g, ok := snap.Goroutine(e.p.Goroutine); ok {
				frames, source = g.Frames, "live, through etcd"
			}
		}
		if frames == nil {
			frames, source = recorded(s, e.p), "recorded at the acquire"
		}
		fmt.Fprintf(&b, "%s, %s, goroutine %d [%s] (%s):\n", e.p.Label(), e.what, e.p.Goroutine, e.p.State, source)
		for _, f := range frames {
			fmt.Fprintf(&b, "  %s\n", f.Func)
			if f.File != "" {
				fmt.Fprintf(&b, "  \t%s:%d\n", f.File, f.Line)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// recorded returns the stack that the process recorded for the goroutine's
// hold or wait.
func recorded(s *etcdreg.Snapshot, p etcdreg.Party) []stackdump.Frame {
	var ids []uint64
	for _, l := range s.Locks {
		if h := l.Holder; h != nil && h.ID == p.ID && h.Goroutine == p.Goroutine {
			ids = append(ids, h.Stack)
		}
	}
	for _, w := range s.Waiters {
		if w.ID == p.ID && w.Goroutine == p.Goroutine {
			ids = append(ids, w.Stack)
		}
	}
	for _, l := range s.Lost {
		if l.ID == p.ID && l.Goroutine == p.Goroutine {
			ids = append(ids, l.Stack)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if fs, ok := s.Stack(p.ID, id); ok {
			return fs
		}
	}
	return nil
}

func gid(g int64) string {
	if g == 0 {
		return "-"
	}
	return strconv.FormatInt(g, 10)
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("15:04:05.000")
}

func where(f *stackdump.Frame) string {
	if f == nil {
		return "-"
	}
	fn := f.Func
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	file := f.File
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		file = file[i+1:]
	}
	if file == "" {
		return fn
	}
	return fmt.Sprintf("%s %s:%d", fn, file, f.Line)
}
