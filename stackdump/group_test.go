package stackdump

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGroupGoroutines(t *testing.T) {
	recv := func(id int64, arg string, wait time.Duration) Goroutine {
		return Goroutine{ID: id, State: "chan receive", Wait: wait,
			Frames:    []Frame{{Func: "main.worker", Args: arg, File: "/app/w.go", Line: 12, Offset: 0x1d}},
			CreatedBy: &Frame{Func: "main.main", File: "/app/main.go", Line: 30}}
	}
	sel := Goroutine{ID: 2, State: "select", Frames: []Frame{{Func: "main.loop", File: "/app/l.go", Line: 3}}}
	gs := []Goroutine{
		recv(9, "0xc000010000", 0),
		sel,
		recv(4, "0xc000020000", 3*time.Minute),
		recv(7, "0xc000010000", time.Minute),
		{ID: 5, State: "sync.Mutex.Lock", Wait: 2 * time.Minute, Frames: []Frame{{Func: "main.worker", Args: "0xc000010000", File: "/app/w.go", Line: 12, Offset: 0x1d}}},
	}
	gs[3].State = "select"

	tests := []struct {
		name string
		mode GroupMode
		want []Group
	}{{
		name: "ignore args",
		mode: IgnoreArgs,
		want: []Group{{
			Frames:    []Frame{{Func: "main.worker", Args: "*", File: "/app/w.go", Line: 12, Offset: 0x1d}},
			CreatedBy: gs[0].CreatedBy, Count: 3, MaxWait: 3 * time.Minute, IDs: []int64{4, 7, 9},
			States: []StateCount{{"chan receive", 2}, {"select", 1}},
		}, {
			// No creator: a group of its own. Longer wait sorts first.
			Frames: gs[4].Frames, Count: 1, MaxWait: 2 * time.Minute, IDs: []int64{5},
			States: []StateCount{{"sync.Mutex.Lock", 1}},
		}, {
			Frames: sel.Frames, Count: 1, IDs: []int64{2}, States: []StateCount{{"select", 1}},
		}},
	}, {
		name: "exact args",
		mode: ExactArgs,
		want: []Group{{
			Frames:    []Frame{{Func: "main.worker", Args: "0xc000010000", File: "/app/w.go", Line: 12, Offset: 0x1d}},
			CreatedBy: gs[0].CreatedBy, Count: 2, MaxWait: time.Minute, IDs: []int64{7, 9},
			States: []StateCount{{"chan receive", 1}, {"select", 1}},
		}, {
			Frames:    []Frame{{Func: "main.worker", Args: "0xc000020000", File: "/app/w.go", Line: 12, Offset: 0x1d}},
			CreatedBy: gs[0].CreatedBy, Count: 1, MaxWait: 3 * time.Minute, IDs: []int64{4},
			States: []StateCount{{"chan receive", 1}},
		}, {
			Frames: gs[4].Frames, Count: 1, MaxWait: 2 * time.Minute, IDs: []int64{5},
			States: []StateCount{{"sync.Mutex.Lock", 1}},
		}, {
			Frames: sel.Frames, Count: 1, IDs: []int64{2}, States: []StateCount{{"select", 1}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GroupGoroutines(gs, tt.mode)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GroupGoroutines: got groups that differ (-want +got):\n%s", diff)
			}
			// The input order must not matter.
			rev := make([]Goroutine, len(gs))
			for i, g := range gs {
				rev[len(gs)-1-i] = g
			}
			if diff := cmp.Diff(got, GroupGoroutines(rev, tt.mode)); diff != "" {
				t.Errorf("GroupGoroutines of the reversed input: got other groups (-fwd +rev):\n%s", diff)
			}
		})
	}
	if gs[0].Frames[0].Args != "0xc000010000" {
		t.Errorf("GroupGoroutines changed its input: got args %q", gs[0].Frames[0].Args)
	}
}

func TestGroupSamples(t *testing.T) {
	a := []Frame{{Func: "runtime.gopark", File: "/r/proc.go", Line: 1}, {Func: "main.a", File: "/a.go", Line: 2}}
	b := []Frame{{Func: "runtime.gopark", File: "/r/proc.go", Line: 1}, {Func: "main.b", File: "/b.go", Line: 3}}
	got := GroupSamples([]Sample{
		{Frames: b, Count: 2},
		{Frames: a, Count: 2, Labels: map[string]string{"k": "1"}},
		{Frames: a, Count: 1, Labels: map[string]string{"k": "2"}},
	})
	// Samples with other labels (a goroutine waiting for another lock)
	// stay apart, and each group shows its labels.
	want := []Group{{Frames: a, Count: 2, Labels: map[string]string{"k": "1"}}, {Frames: b, Count: 2}, {Frames: a, Count: 1, Labels: map[string]string{"k": "2"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GroupSamples: got groups that differ (-want +got):\n%s", diff)
	}
	if s := got[0].String(); !strings.Contains(s, "\nlabels: k=1\n") {
		t.Errorf("Write: got %q; want a labels line", s)
	}
}

func TestGroupGoroutinesLabels(t *testing.T) {
	f := []Frame{{Func: "main.a", File: "/a.go", Line: 2}}
	gs := []Goroutine{
		{ID: 1, Frames: f, Labels: map[string]string{"lockwatch.wait": "q", "req": "1"}},
		{ID: 2, Frames: f, Labels: map[string]string{"lockwatch.wait": "q", "req": "2"}},
	}
	got := GroupGoroutines(gs, IgnoreArgs)
	if len(got) != 1 || !cmp.Equal(got[0].Labels, map[string]string{"lockwatch.wait": "q"}) {
		t.Errorf("IgnoreArgs: got %+v; want one group with the labels both have", got)
	}
	if got := GroupGoroutines(gs, ExactArgs); len(got) != 2 {
		t.Errorf("ExactArgs: got %d groups; want 2 (other labels)", len(got))
	}
}

func TestGroupString(t *testing.T) {
	ids := make([]int64, 22)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	tests := []struct {
		name string
		g    Group
		want string
	}{{
		name: "goroutines",
		g: Group{
			Frames:    []Frame{{Func: "main.r", Args: "*", File: "/r.go", Line: 2}, {Func: "main.r", Args: "...", File: "/r.go", Line: 3}},
			Elided:    &Elision{At: 1, Count: 7},
			CreatedBy: &Frame{Func: "main.main", File: "/main.go", Line: 30},
			Count:     22, MaxWait: 5 * time.Minute, IDs: ids,
			States: []StateCount{{"chan receive", 20}, {"select", 2}},
		},
		want: `22 goroutines: chan receive 20, select 2; longest wait 5m0s
ids: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 and 2 more
main.r(*)
	/r.go:2
...7 frames elided...
main.r(...)
	/r.go:3
created by main.main
	/main.go:30
`,
	}, {
		name: "profile sample",
		g:    Group{Frames: []Frame{{Func: "main.f", File: "/f.go", Line: 1}}, Count: 1, Elided: &Elision{At: 1}},
		want: "1 goroutine\nmain.f()\n\t/f.go:1\n...additional frames elided...\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.g.String(); got != tt.want {
				t.Errorf("String: got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestGroupFixture groups a generated dump: the three identical waiters
// of testdata/stack.txt make one group.
func TestGroupFixture(t *testing.T) {
	s := parseFile(t, "testdata/stack.txt")
	groups := GroupGoroutines(s.Goroutines, IgnoreArgs)
	if groups[0].Count != 3 || !strings.HasPrefix(groups[0].Frames[0].Func, "main.wait") {
		t.Errorf("first group: got %d goroutines in %v; want 3 in main.wait", groups[0].Count, groups[0].Frames)
	}
}
