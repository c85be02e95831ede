package stackdump

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GroupMode says when two goroutines have the same stack.
type GroupMode int

const (
	// IgnoreArgs groups goroutines stopped at the same calls (function,
	// file and line of every frame, and of the go statement), whatever
	// their arguments. It is the zero value: 1,000 workers blocked in the
	// same receive make one group.
	IgnoreArgs GroupMode = iota
	// ExactArgs also requires the same argument values and pc offsets, so
	// goroutines waiting on different channels stay apart.
	ExactArgs
)

// A Group is a set of goroutines with the same stack.
// It is a plain value: safe for concurrent reads.
type Group struct {
	// Frames are the shared stack. With IgnoreArgs, an argument list that
	// differs between the goroutines is "*".
	Frames    []Frame  `json:"frames"`
	Elided    *Elision `json:"elided,omitempty"`
	CreatedBy *Frame   `json:"created_by,omitempty"`
	Count     int64    `json:"count"` // goroutines in the group
	// States counts the goroutines in each state, most common first; empty
	// for a group of profile samples, which have no states.
	States  []StateCount  `json:"states,omitempty"`
	MaxWait time.Duration `json:"max_wait,omitempty"` // the longest wait of any of them
	IDs     []int64       `json:"ids,omitempty"`      // ascending; empty for profile samples
	// Labels are the pprof labels every goroutine of the group has (the
	// same key and value); nil when there are none.
	Labels map[string]string `json:"labels,omitempty"`
}

// A StateCount is how many goroutines of a Group are in State.
type StateCount struct {
	State string `json:"state"`
	Count int    `json:"count"`
}

// GroupGoroutines groups goroutines with the same stack. Groups come
// largest first, then by longest wait, then by innermost function, so the
// same goroutines always give the same order.
func GroupGoroutines(gs []Goroutine, mode GroupMode) []Group {
	index := make(map[string]int)
	var groups []Group
	var members [][]*Goroutine // per group, for merging arguments
	var b strings.Builder
	for i := range gs {
		g := &gs[i]
		b.Reset()
		writeKey(&b, g.Frames, g.Elided, g.CreatedBy, mode)
		if mode == ExactArgs {
			writeLabels(&b, g.Labels)
		}
		k, ok := index[b.String()]
		if !ok {
			k = len(groups)
			index[b.String()] = k
			groups = append(groups, Group{
				Frames:    slices.Clone(g.Frames),
				Elided:    g.Elided,
				CreatedBy: g.CreatedBy,
				States:    []StateCount{},
				IDs:       []int64{},
				Labels:    maps.Clone(g.Labels),
			})
			members = append(members, nil)
		}
		gr := &groups[k]
		gr.Labels = commonLabels(gr.Labels, g.Labels)
		gr.Count++
		gr.MaxWait = max(gr.MaxWait, g.Wait)
		gr.IDs = append(gr.IDs, g.ID)
		gr.States = addState(gr.States, g.State)
		members[k] = append(members[k], g)
	}
	for k := range groups {
		gr := &groups[k]
		slices.Sort(gr.IDs)
		slices.SortFunc(gr.States, func(a, b StateCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.State, b.State))
		})
		if mode == IgnoreArgs {
			for _, g := range members[k][1:] {
				for i := range gr.Frames {
					if gr.Frames[i].Args != g.Frames[i].Args {
						gr.Frames[i].Args = "*"
					}
				}
			}
		}
	}
	sortGroups(groups)
	return groups
}

// commonLabels keeps the labels of have that l has too, with the same value.
func commonLabels(have, l map[string]string) map[string]string {
	for k, v := range have {
		if w, ok := l[k]; !ok || w != v {
			delete(have, k)
		}
	}
	if len(have) == 0 {
		return nil
	}
	return have
}

// writeLabels writes labels in key order.
func writeLabels(b *strings.Builder, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(b, "label %q=%q\n", k, labels[k])
	}
}

func addState(states []StateCount, s string) []StateCount {
	for i := range states {
		if states[i].State == s {
			states[i].Count++
			return states
		}
	}
	return append(states, StateCount{State: s, Count: 1})
}

// writeKey writes what makes two stacks the same in mode.
func writeKey(b *strings.Builder, frames []Frame, e *Elision, created *Frame, mode GroupMode) {
	f := func(fr Frame) {
		b.WriteString(fr.Func)
		b.WriteByte(0)
		b.WriteString(fr.File)
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(fr.Line))
		if mode == ExactArgs {
			b.WriteByte(0)
			b.WriteString(fr.Args)
			b.WriteByte(0)
			b.WriteString(strconv.FormatUint(fr.Offset, 16))
		}
		b.WriteByte('\n')
	}
	for _, fr := range frames {
		f(fr)
	}
	if e != nil {
		fmt.Fprintf(b, "elided %d %d\n", e.At, e.Count)
	}
	if created != nil {
		b.WriteString("created by ")
		f(*created)
	}
}

// GroupSamples groups the samples of a goroutine profile that have the same
// stack and the same labels, in the order of GroupGoroutines: goroutines
// blocked at the same call for different reasons that their labels name
// (a lock's name, a request) stay apart.
func GroupSamples(samples []Sample) []Group {
	index := make(map[string]int)
	var groups []Group
	var b strings.Builder
	for _, s := range samples {
		b.Reset()
		writeKey(&b, s.Frames, nil, nil, ExactArgs)
		writeLabels(&b, s.Labels)
		k, ok := index[b.String()]
		if !ok {
			k = len(groups)
			index[b.String()] = k
			groups = append(groups, Group{Frames: slices.Clone(s.Frames), Labels: maps.Clone(s.Labels)})
		}
		groups[k].Count += s.Count
	}
	sortGroups(groups)
	return groups
}

func sortGroups(groups []Group) {
	slices.SortStableFunc(groups, func(a, b Group) int {
		if c := cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(b.MaxWait, a.MaxWait)); c != 0 {
			return c
		}
		for i := 0; i < len(a.Frames) && i < len(b.Frames); i++ {
			fa, fb := a.Frames[i], b.Frames[i]
			if c := cmp.Or(strings.Compare(fa.Func, fb.Func), strings.Compare(fa.File, fb.File), cmp.Compare(fa.Line, fb.Line)); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(len(a.Frames), len(b.Frames)); c != 0 {
			return c
		}
		if len(a.IDs) > 0 && len(b.IDs) > 0 {
			return cmp.Compare(a.IDs[0], b.IDs[0])
		}
		return 0
	})
}

// maxIDs is how many goroutine ids Write lists.
const maxIDs = 20

// Write renders the group as text, in the shape of a Go traceback:
//
//	3 goroutines: chan receive 2, select 1; longest wait 5m0s
//	ids: 7, 8, 9
//	labels: lockwatch.wait=queue.wlock
//	main.worker(*)
//		/src/main.go:12
//	created by main.main
//		/src/main.go:30
//
// The output depends only on the group. Write lists at most 20 ids.
func (g Group) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	noun := "goroutines"
	if g.Count == 1 {
		noun = "goroutine"
	}
	fmt.Fprintf(bw, "%d %s", g.Count, noun)
	for i, s := range g.States {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(bw, "%s%s %d", sep, s.State, s.Count)
	}
	if g.MaxWait > 0 {
		fmt.Fprintf(bw, "; longest wait %v", g.MaxWait)
	}
	bw.WriteString("\n")
	if len(g.IDs) > 0 {
		bw.WriteString("ids: ")
		for i, id := range g.IDs[:min(len(g.IDs), maxIDs)] {
			if i > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(strconv.FormatInt(id, 10))
		}
		if len(g.IDs) > maxIDs {
			fmt.Fprintf(bw, " and %d more", len(g.IDs)-maxIDs)
		}
		bw.WriteString("\n")
	}
	if len(g.Labels) > 0 {
		bw.WriteString("labels: ")
		for i, k := range slices.Sorted(maps.Keys(g.Labels)) {
			if i > 0 {
				bw.WriteString(", ")
			}
			fmt.Fprintf(bw, "%s=%s", k, g.Labels[k])
		}
		bw.WriteString("\n")
	}
	for i, f := range g.Frames {
		if g.Elided != nil && g.Elided.At == i {
			writeElision(bw, g.Elided)
		}
		fmt.Fprintf(bw, "%s(%s)\n", f.Func, f.Args)
		writeFile(bw, f)
	}
	if g.Elided != nil && g.Elided.At >= len(g.Frames) {
		writeElision(bw, g.Elided)
	}
	if g.CreatedBy != nil {
		fmt.Fprintf(bw, "created by %s\n", g.CreatedBy.Func)
		writeFile(bw, *g.CreatedBy)
	}
	return bw.Flush()
}

func writeElision(w *bufio.Writer, e *Elision) {
	if e.Count > 0 {
		fmt.Fprintf(w, "...%d frames elided...\n", e.Count)
	} else {
		w.WriteString("...additional frames elided...\n")
	}
}

func writeFile(w *bufio.Writer, f Frame) {
	if f.File != "" {
		fmt.Fprintf(w, "\t%s:%d\n", f.File, f.Line)
	}
}

// String returns what Write writes.
func (g Group) String() string {
	var b strings.Builder
	g.Write(&b) // a strings.Builder does not fail
	return b.String()
}
