package probeclient

import (
	"strconv"
	"time"

	"github.com/google/pprof/profile"

	"github.com/lockwatch/lockwatch/stackdump"
)

// HoldersProfile returns the lock-holders profile of v in pprof's format (read it
// with `go tool pprof`): one sample per holder, reader and waiter of a
// drop-in mutex, valued 1 and by how long it has held or waited, located at
// its stack (a holder's or reader's acquire site when no stack was
// recorded), labelled with the mutex's name, kind and the role (holder,
// reader, waiter), and numerically with the goroutine id.
//
//	go tool pprof -traces lockholders.pb.gz
//	go tool pprof -tagfocus role=waiter -top lockholders.pb.gz
func HoldersProfile(v *MutexView) *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "mutexes", Unit: "count"}, {Type: "held", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "mutexes", Unit: "count"},
		Period:     1,
		TimeNanos:  v.Taken.UnixNano(),
		Comments:   []string{"lockwatch lock-holders profile of pid " + strconv.Itoa(v.PID)},
	}
	funcs := map[[2]string]*profile.Function{}
	locs := map[stackdump.Frame]*profile.Location{}
	location := func(f stackdump.Frame) *profile.Location {
		f = stackdump.Frame{Func: f.Func, File: f.File, Line: f.Line}
		if l := locs[f]; l != nil {
			return l
		}
		fn := funcs[[2]string{f.Func, f.File}]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(p.Function) + 1), Name: f.Func, SystemName: f.Func, Filename: f.File}
			funcs[[2]string{f.Func, f.File}] = fn
			p.Function = append(p.Function, fn)
		}
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: fn, Line: int64(f.Line)}}}
		locs[f] = l
		p.Location = append(p.Location, l)
		return l
	}
	add := func(m Mutex, role string, g int64, since time.Time, stack []stackdump.Frame) {
		s := &profile.Sample{
			Value:    []int64{1, max(int64(v.Taken.Sub(since)), 0)},
			Label:    map[string][]string{"name": {m.Name}, "kind": {m.Kind}, "role": {role}},
			NumLabel: map[string][]int64{"goroutine": {g}},
		}
		for _, f := range stack {
			s.Location = append(s.Location, location(f))
		}
		p.Sample = append(p.Sample, s)
	}
	for _, m := range v.Mutexes {
		if h := m.Holder; h != nil {
			st := h.Stack
			if len(st) == 0 {
				st = []stackdump.Frame{h.Site}
			}
			add(m, "holder", h.Goroutine, h.Since, st)
		}
		for _, r := range m.Readers {
			add(m, "reader", r.Goroutine, r.Since, []stackdump.Frame{r.Site})
		}
		for _, w := range m.Waiters {
			add(m, "waiter", w.Goroutine, w.Since, w.Stack)
		}
	}
	return p
}
