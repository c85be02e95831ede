package stackdump

import (
	"errors"
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
