package stackdump

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	main := &Frame{Func: "main.main", File: "/app/main.go", Line: 9, Offset: 0x25}
	tests := []struct {
		name string
		in   string
		want []Goroutine
	}{{
		name: "running",
		in:   "goroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n",
		want: []Goroutine{{ID: 1, State: "running", Frames: []Frame{{Func: "main.main", File: "/app/main.go", Line: 5, Offset: 0x1d}}}},
	}, {
		name: "gp and m fields, trailers",
		in: "goroutine 7 gp=0xc000007340 m=nil [chan receive, 5 minutes]:\n" +
			"runtime.gopark(0x0?, 0x0?)\n\t/go/src/runtime/proc.go:462 +0xce fp=0xc00004af58 sp=0xc00004af38 pc=0x43e76e\n" +
			"created by main.main in goroutine 1\n\t/app/main.go:9 +0x25\n",
		want: []Goroutine{{ID: 7, State: "chan receive", Wait: 5 * time.Minute, CreatedBy: main, CreatorID: 1,
			Frames: []Frame{{Func: "runtime.gopark", Args: "0x0?, 0x0?", File: "/go/src/runtime/proc.go", Line: 462, Offset: 0xce}}}},
	}, {
		name: "m and mp fields",
		in:   "goroutine 3 gp=0xc000102a80 m=3 mp=0xc000100008 [syscall, locked to thread]:\nmain.f()\n\t/app/f.go:1 +0x1\n",
		want: []Goroutine{{ID: 3, State: "syscall", LockedToThread: true, Frames: []Frame{{Func: "main.f", File: "/app/f.go", Line: 1, Offset: 1}}}},
	}, {
		name: "wait and locked",
		in:   "goroutine 5 [sync.Mutex.Lock, 2 minutes, locked to thread]:\nmain.(*T).m(0xc000010000, {0x4b4f3a, 0x5})\n\t/app/t.go:3 +0x2\n",
		want: []Goroutine{{ID: 5, State: "sync.Mutex.Lock", Wait: 2 * time.Minute, LockedToThread: true,
			Frames: []Frame{{Func: "main.(*T).m", Args: "0xc000010000, {0x4b4f3a, 0x5}", File: "/app/t.go", Line: 3, Offset: 2}}}},
	}, {
		name: "inlined and generic",
		in:   "goroutine 4 [select]:\nmain.g[...](...)\n\t/app/g.go:7\nmain.main()\n\t/app/main.go:9 +0x25\n",
		want: []Goroutine{{ID: 4, State: "select", Frames: []Frame{
			{Func: "main.g[...]", Args: "...", File: "/app/g.go", Line: 7},
			{Func: "main.main", File: "/app/main.go", Line: 9, Offset: 0x25}}}},
	}, {
		name: "old created by",
		in:   "goroutine 8 [chan send]:\nmain.f()\n\t/app/f.go:1 +0x1\ncreated by main.main\n\t/app/main.go:9 +0x25\n",
		want: []Goroutine{{ID: 8, State: "chan send", CreatedBy: main, Frames: []Frame{{Func: "main.f", File: "/app/f.go", Line: 1, Offset: 1}}}},
	}, {
		name: "elided",
		in:   "goroutine 9 [running]:\nmain.r()\n\t/app/r.go:2 +0x1\n...12 frames elided...\nmain.r()\n\t/app/r.go:2 +0x1\n",
		want: []Goroutine{{ID: 9, State: "running", Elided: &Elision{At: 1, Count: 12}, Frames: []Frame{
			{Func: "main.r", File: "/app/r.go", Line: 2, Offset: 1}, {Func: "main.r", File: "/app/r.go", Line: 2, Offset: 1}}}},
	}, {
		name: "stack unavailable",
		in:   "goroutine 2 [running]:\n\tgoroutine running on other thread; stack unavailable\ncreated by main.main in goroutine 1\n\t/app/main.go:9 +0x25\n",
		want: []Goroutine{{ID: 2, State: "running", StackUnavailable: true, Frames: []Frame{}, CreatedBy: main, CreatorID: 1}},
	}, {
		name: "ancestors",
		in: "goroutine 10 [running]:\nmain.f()\n\t/app/f.go:1 +0x1\ncreated by main.main in goroutine 1\n\t/app/main.go:9 +0x25\n" +
			"[originating from goroutine 1]:\nmain.main(...)\n\t/app/main.go:9 +0x25\n...additional frames elided...\n",
		want: []Goroutine{{ID: 10, State: "running", CreatedBy: main, CreatorID: 1,
			Frames:    []Frame{{Func: "main.f", File: "/app/f.go", Line: 1, Offset: 1}},
			Ancestors: []Ancestor{{ID: 1, Elided: &Elision{At: 1}, Frames: []Frame{{Func: "main.main", Args: "...", File: "/app/main.go", Line: 9, Offset: 0x25}}}}}},
	}, {
		name: "labels",
		in:   "goroutine 11 [select, locked to thread labels:{\"a\": \"x, y\", \"b\": \"\\\"\"}]:\nmain.f()\n\t/app/f.go:1 +0x1\n",
		want: []Goroutine{{ID: 11, State: "select", LockedToThread: true, Labels: map[string]string{"a": "x, y", "b": `"`},
			Frames: []Frame{{Func: "main.f", File: "/app/f.go", Line: 1, Offset: 1}}}},
	}, {
		name: "text around, registers, CRLF",
		in: "=== RUN TestX\r\nlog: goroutine 3 started (x)\r\npanic: boom\r\n\r\ngoroutine 1 [running]:\r\nmain.main()\r\n\t/app/main.go:5 +0x1d\r\n" +
			"rax    0x0\r\nrip    0x46ad01\r\nexit status 2\r\nFAIL\tapp\t0.1s\r\n",
		want: []Goroutine{{ID: 1, State: "running", Frames: []Frame{{Func: "main.main", File: "/app/main.go", Line: 5, Offset: 0x1d}}}},
	}, {
		name: "windows path",
		in:   "goroutine 1 [running]:\nmain.main()\n\tC:/app/main.go:5 +0x1d\n",
		want: []Goroutine{{ID: 1, State: "running", Frames: []Frame{{Func: "main.main", File: "C:/app/main.go", Line: 5, Offset: 0x1d}}}},
	}, {
		name: "no blank line between goroutines",
		in:   "goroutine 1 [running]:\nmain.main()\n\t/app/main.go:5\ngoroutine 2 [sleep]:\ntime.Sleep(0x3b9aca00)\n\t/go/src/runtime/time.go:300 +0xf2\n",
		want: []Goroutine{
			{ID: 1, State: "running", Frames: []Frame{{Func: "main.main", File: "/app/main.go", Line: 5}}},
			{ID: 2, State: "sleep", Frames: []Frame{{Func: "time.Sleep", Args: "0x3b9aca00", File: "/go/src/runtime/time.go", Line: 300, Offset: 0xf2}}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("Parse: got error %v; want nil", err)
			}
			if diff := cmp.Diff(tt.want, s.Goroutines); diff != "" {
				t.Errorf("Parse: got goroutines that differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"panic", "panic: boom\n\ngoroutine 1 [running]:\n", "panic: boom"},
		{"fatal", "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\n", "fatal error: all goroutines are asleep - deadlock!"},
		{"sigquit", "SIGQUIT: quit\nPC=0x46ad01 m=0 sigcode=0\n", "SIGQUIT: quit"},
		{"first wins", "panic: a [recovered]\n\tpanic: b\n", "panic: a [recovered]"},
		{"none", "goroutine 1 [running]:\nmain.main()\n\t/app/main.go:5\n", ""},
		{"not a signal", "SIGn: x\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := Parse(strings.NewReader(tt.in))
			if s.Reason != tt.want {
				t.Errorf("Reason: got %q; want %q", s.Reason, tt.want)
			}
		})
	}
}

// TestParseErrors checks that Parse reports unreadable lines, quoting
// them, and keeps what it could read.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantErrs   []string // substrings, one per error, in order
		wantFrames []int    // frames per goroutine read
	}{{
		name:       "missing file line",
		in:         "goroutine 1 [running]:\nmain.f()\nmain.g()\n\t/app/g.go:2 +0x1\n",
		wantErrs:   []string{`line 3: want the source line of main.f: "main.g()"`},
		wantFrames: []int{2},
	}, {
		name:       "truncated at the end",
		in:         "goroutine 1 [running]:\nmain.f()\n",
		wantErrs:   []string{"line 2: missing source line after the last function"},
		wantFrames: []int{1},
	}, {
		name:       "bad line number",
		in:         "goroutine 1 [running]:\nmain.f()\n\t/app/f.go:x +0x1\n\ngoroutine 2 [sleep]:\n",
		wantErrs:   []string{`line 3: want file:line: "\t/app/f.go:x +0x1"`},
		wantFrames: []int{1, 0},
	}, {
		name:       "source line without function",
		in:         "goroutine 1 [running]:\n\t/app/f.go:1\n",
		wantErrs:   []string{`line 2: source line without a function line before it`},
		wantFrames: []int{0},
	}, {
		name:       "bad header",
		in:         "goroutine 1 pc=0x1 [running]:\nmain.f()\n\t/app/f.go:1\n",
		wantErrs:   []string{`line 1: bad goroutine header: "goroutine 1 pc=0x1 [running]:"`},
		wantFrames: []int{},
	}, {
		name:       "bad labels and wait",
		in:         "goroutine 1 [select, x minutes labels:{\"a\" \"b\"}]:\n",
		wantErrs:   []string{"line 1: bad goroutine labels", "line 1: bad wait time"},
		wantFrames: []int{0},
	}, {
		name:       "bad created by",
		in:         "goroutine 2 [select]:\nmain.f()\n\t/app/f.go:1\ncreated by main.main in goroutine x\n",
		wantErrs:   []string{"line 4: bad creator goroutine", `line 4: missing source line after the last "created by"`},
		wantFrames: []int{1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(strings.NewReader(tt.in))
			if !errors.Is(err, ErrParse) {
				t.Fatalf("Parse: got error %v; want ErrParse", err)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.wantErrs) {
				t.Fatalf("Parse: got %d errors %q; want %d", len(got), got, len(tt.wantErrs))
			}
			for i, w := range tt.wantErrs {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d: got %q; want it to contain %q", i, got[i], w)
				}
			}
			frames := []int{}
			for _, g := range s.Goroutines {
				frames = append(frames, len(g.Frames))
			}
			if !cmp.Equal(frames, tt.wantFrames) {
				t.Errorf("frames per goroutine: got %v; want %v", frames, tt.wantFrames)
			}
		})
	}
}

func TestParseManyErrors(t *testing.T) {
	in := "goroutine 1 [running]:\n" + strings.Repeat("\tstray\n", 250)
	_, err := Parse(strings.NewReader(in))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || !strings.Contains(lines[maxErrors], "150 more unreadable lines") {
		t.Errorf("got %d error lines, last %q; want %d, the last counting 150 more", len(lines), lines[len(lines)-1], maxErrors+1)
	}
}

func TestParseLongLine(t *testing.T) {
	in := strings.Repeat("log line ", 20000) + "\ngoroutine 1 [running]:\nmain.f()\n\t/app/f.go:1\n"
	s, err := Parse(strings.NewReader(in))
	if err != nil || len(s.Goroutines) != 1 || len(s.Goroutines[0].Frames) != 1 {
		t.Errorf("got %v, error %v; want goroutine 1 with 1 frame after a long line", s.Goroutines, err)
	}
}

func TestCalls(t *testing.T) {
	g := Goroutine{Frames: []Frame{{Func: "sync.(*Mutex).Lock"}, {Func: "github.com/x/y.(*Pool).Get"}}}
	tests := []struct {
		prefix string
		want   bool
	}{
		{"sync.(*Mutex).Lock", true},
		{"github.com/x/y.", true},
		{"sync.(*RWMutex)", false},
		{"", true},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			if got := g.Calls(tt.prefix); got != tt.want {
				t.Errorf("Calls(%q): got %v; want %v", tt.prefix, got, tt.want)
			}
		})
	}
	s := &Snapshot{Goroutines: []Goroutine{{ID: 3}, g, {ID: 9, Frames: []Frame{{Func: "sync.(*Mutex).Lock"}}}}}
	if got := s.Calling("sync.(*Mutex)"); len(got) != 2 || got[1].ID != 9 {
		t.Errorf("Calling: got %v; want goroutines 0 and 9", got)
	}
	if g, ok := s.Goroutine(9); !ok || g.ID != 9 {
		t.Errorf("Goroutine(9): got %v, %v; want goroutine 9, true", g.ID, ok)
	}
	if _, ok := s.Goroutine(4); ok {
		t.Errorf("Goroutine(4): got true; want false")
	}
}

// TestParseLongFrame checks that a frame line longer than the parser keeps
// is still a frame, with the cut marked in it, and that the frames after it
// are read: before, the goroutine lost all its frames and the next one.
func TestParseLongFrame(t *testing.T) {
	args := strings.Repeat("0x1, ", 20000) // 100,000 bytes
	long := strings.Repeat("d/", 40000)    // an 80,000-byte directory
	in := "goroutine 1 [running]:\nmain.f(" + args + "0x2)\n\t/app/f.go:1 +0x1\n" +
		"main.g()\n\t/" + long + "g.go:2 +0x2\nmain.main()\n\t/app/main.go:3\n"
	s, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Parse: got error %v; want nil", err)
	}
	if len(s.Goroutines) != 1 || len(s.Goroutines[0].Frames) != 3 {
		t.Fatalf("got %d goroutines, frames %v; want 1 goroutine with 3 frames", len(s.Goroutines), s.Goroutines)
	}
	fs := s.Goroutines[0].Frames
	if fs[0].Func != "main.f" || !strings.Contains(fs[0].Args, "bytes cut]...") || !strings.HasSuffix(fs[0].Args, "0x1, 0x2") || fs[0].Line != 1 {
		t.Errorf("frame 0: got %s(%.40s...) line %d; want main.f, its arguments' end and a cut marker, line 1", fs[0].Func, fs[0].Args, fs[0].Line)
	}
	if fs[1].Func != "main.g" || !strings.HasSuffix(fs[1].File, "d/g.go") || !strings.Contains(fs[1].File, "bytes cut]...") || fs[1].Line != 2 || fs[1].Offset != 2 {
		t.Errorf("frame 1: got %s %.40s...:%d +%#x; want main.g in a cut file g.go:2 +0x2", fs[1].Func, fs[1].File, fs[1].Line, fs[1].Offset)
	}
	if fs[2].Func != "main.main" {
		t.Errorf("frame 2: got %s; want main.main", fs[2].Func)
	}
	if s.LongLines != 2 {
		t.Errorf("LongLines: got %d; want 2", s.LongLines)
	}
	if n := len(fs[0].Args) + len(fs[1].File); n > 2*(maxLine+32) {
		t.Errorf("kept %d bytes of the two long lines; want at most %d", n, 2*(maxLine+32))
	}
}

func TestParseDumps(t *testing.T) {
	g := func(id int64) string {
		return "goroutine " + strconv.FormatInt(id, 10) + " [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n\n"
	}
	tests := []struct {
		name    string
		in      string
		reasons []string // per dump
		ids     [][]int64
		cut     []bool
	}{{
		name:    "two panics",
		in:      "panic: a\n\n" + g(1) + g(2) + "exit status 2\npanic: b\n\n" + g(1),
		reasons: []string{"panic: a", "panic: b"},
		ids:     [][]int64{{1, 2}, {1}},
		cut:     []bool{false, false},
	}, {
		name:    "two dumps without reasons",
		in:      g(1) + g(2) + g(1) + g(3),
		reasons: []string{"", ""},
		ids:     [][]int64{{1, 2}, {1, 3}},
		cut:     []bool{false, false},
	}, {
		name: "crash threads are one dump",
		in: "SIGQUIT: quit\nPC=0x1 m=0 sigcode=0\n\ngoroutine 0 gp=0x1 m=0 [idle]:\nruntime.f()\n\t/go/f.go:1\n\n" +
			"-----\n\nSIGQUIT: quit\nPC=0x2 m=1 sigcode=0\n\ngoroutine 0 gp=0x2 m=1 [idle]:\nruntime.f()\n\t/go/f.go:1\n\n" + g(1),
		reasons: []string{"SIGQUIT: quit"},
		ids:     [][]int64{{0, 0, 1}},
		cut:     []bool{false},
	}, {
		name:    "cut mid-line",
		in:      "panic: a\n\n" + g(1) + "goroutine 2 [chan receive]:\nmain.wo",
		reasons: []string{"panic: a"},
		ids:     [][]int64{{1, 2}},
		cut:     []bool{true},
	}, {
		name:    "cut after a function line",
		in:      g(1) + "goroutine 2 [chan receive]:\nmain.worker()\n",
		reasons: []string{""},
		ids:     [][]int64{{1, 2}},
		cut:     []bool{true},
	}, {
		name:    "text after the dump without a line ending is no cut",
		in:      g(1) + "exit status 2",
		reasons: []string{""},
		ids:     [][]int64{{1}},
		cut:     []bool{false},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dumps, _ := ParseDumps(strings.NewReader(tt.in))
			var reasons []string
			var ids [][]int64
			var cut []bool
			for _, d := range dumps {
				reasons = append(reasons, d.Reason)
				var is []int64
				for _, g := range d.Goroutines {
					is = append(is, g.ID)
				}
				ids = append(ids, is)
				cut = append(cut, d.Cut)
			}
			if !cmp.Equal(reasons, tt.reasons) || !cmp.Equal(ids, tt.ids) || !cmp.Equal(cut, tt.cut) {
				t.Errorf("got reasons %q, ids %v, cut %v; want %q, %v, %v", reasons, ids, cut, tt.reasons, tt.ids, tt.cut)
			}
		})
	}
	// Parse returns the first dump and says that there are more.
	s, err := Parse(strings.NewReader(g(1) + g(1)))
	if !errors.Is(err, ErrSeveralDumps) || len(s.Goroutines) != 1 {
		t.Errorf("Parse of two dumps: got %d goroutines, error %v; want 1 and ErrSeveralDumps", len(s.Goroutines), err)
	}
}

// TestParsePrefixed reads dumps with a timestamp (or a log's fields) before
// every line, as kubectl logs --timestamps, docker logs -t and journald
// write them.
func TestParsePrefixed(t *testing.T) {
	body := []string{"panic: boom", "", "goroutine 1 [running]:", "main.main()", "\t/app/main.go:5 +0x1d", "",
		"goroutine 7 [chan receive, 2 minutes]:", "main.worker()", "\t/app/w.go:9", "created by main.main in goroutine 1", "\t/app/main.go:4 +0x2", "", "exit status 2"}
	prefixes := map[string]func(i int) string{
		"rfc3339": func(i int) string { return fmt.Sprintf("2026-11-25T19:58:05.%dZ ", 100+i*7) },
		"journald": func(i int) string {
			return fmt.Sprintf("Nov  5 19:58:%02d host app[123]: ", i)
		},
	}
	for name, prefix := range prefixes {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			for i, l := range body {
				b.WriteString(prefix(i) + l + "\n")
			}
			s, err := Parse(strings.NewReader(b.String()))
			if err != nil {
				t.Fatalf("Parse: got error %v; want nil", err)
			}
			if s.Reason != "panic: boom" || len(s.Goroutines) != 2 {
				t.Fatalf("got reason %q, %d goroutines; want panic: boom and 2", s.Reason, len(s.Goroutines))
			}
			w := s.Goroutines[1]
			if w.ID != 7 || w.Wait != 2*time.Minute || len(w.Frames) != 1 || w.Frames[0].File != "/app/w.go" || w.CreatedBy == nil || w.CreatorID != 1 {
				t.Errorf("goroutine 7: got %+v; want main.worker at /app/w.go:9, created by main.main in goroutine 1", w)
			}
		})
	}
}
