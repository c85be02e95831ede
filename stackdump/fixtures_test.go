package stackdump

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "run the generators in testdata/gen to rewrite testdata/*.txt, and rewrite the golden testdata/*.json")

// generators make the fixtures testdata/<name>.txt: `go run
// ./testdata/gen/<name>` with env, stdout and stderr together. Fixtures
// whose names start with "hand-" are written by hand instead.
var generators = []struct {
	name string
	env  []string
}{
	{name: "sigquit"}, // SIGQUIT: gp= m= headers, runtime frames, registers, elided frames
	{name: "panic"},   // a panic with the default GOTRACEBACK
	{name: "stack", env: []string{"GODEBUG=tracebacklabels=1"}},        // runtime.Stack(buf, true), with labels
	{name: "ancestors", env: []string{"GODEBUG=tracebackancestors=5"}}, // [originating from goroutine N]:
	{name: "crash"},   // SIGSEGV with GOTRACEBACK=crash
	{name: "timeout"}, // go test -timeout
}

func generate(t *testing.T) {
	for _, g := range generators {
		cmd := exec.Command("go", "run", "./testdata/gen/"+g.name)
		cmd.Env = append(os.Environ(), g.env...)
		out, err := cmd.CombinedOutput() // most exit with status 2, on purpose
		if !bytes.Contains(out, []byte("\ngoroutine ")) && !bytes.HasPrefix(out, []byte("goroutine ")) {
			t.Fatalf("go run ./testdata/gen/%s: no traceback (%v):\n%s", g.name, err, out)
		}
		if err := os.WriteFile(filepath.Join("testdata", g.name+".txt"), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGolden parses every testdata/*.txt and compares the result with
// testdata/*.json.
func TestGolden(t *testing.T) {
	if *update {
		generate(t)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(name, func(t *testing.T) {
			got := parseFile(t, file)
			b, err := json.MarshalIndent(got, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			golden := strings.TrimSuffix(file, ".txt") + ".json"
			if *update {
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("Parse(%s) differs from %s; got:\n%s", file, golden, b)
			}
		})
	}
}

func parseFile(t *testing.T, file string) *Snapshot {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Parse(f)
	if err != nil {
		t.Errorf("Parse(%s): %v", file, err)
	}
	return s
}

// TestFixtureContents checks that each generated fixture shows what its
// generator set out to make, as Parse reads it.
func TestFixtureContents(t *testing.T) {
	has := func(pred func(Goroutine) bool) func(*Snapshot) bool {
		return func(s *Snapshot) bool { return slices.ContainsFunc(s.Goroutines, pred) }
	}
	state := func(st string) func(*Snapshot) bool {
		return has(func(g Goroutine) bool { return g.State == st && g.Calls("main.") })
	}
	tests := []struct {
		file, what string
		ok         func(*Snapshot) bool
	}{
		{"sigquit", "reason SIGQUIT", func(s *Snapshot) bool { return s.Reason == "SIGQUIT: quit" }},
		{"sigquit", "chan receive", state("chan receive")},
		{"sigquit", "select", state("select")},
		{"sigquit", "sync.Mutex.Lock", state("sync.Mutex.Lock")},
		{"sigquit", "sleep", state("sleep")},
		{"sigquit", "IO wait", state("IO wait")},
		{"sigquit", "locked to thread", has(func(g Goroutine) bool { return g.LockedToThread && g.Calls("main.locked") })},
		{"sigquit", "elided frames", has(func(g Goroutine) bool { return g.Elided != nil && g.Elided.Count > 0 && g.Calls("main.deep") })},
		{"sigquit", "generic method", has(func(g Goroutine) bool { return g.Calls("main.(*queue[...]).get") })},
		{"sigquit", "runtime frames", has(func(g Goroutine) bool { return g.Calls("runtime.gopark") })},
		{"panic", "reason", func(s *Snapshot) bool { return s.Reason == "panic: boom: worker" }},
		{"panic", "one goroutine", func(s *Snapshot) bool { return len(s.Goroutines) == 1 && s.Goroutines[0].CreatorID == 1 }},
		{"stack", "labels", has(func(g Goroutine) bool { return g.Labels["role"] == "writer" })},
		{"stack", "inlined frame", has(func(g Goroutine) bool { return len(g.Frames) > 0 && g.Frames[0].Args == "..." })},
		{"ancestors", "ancestors", has(func(g Goroutine) bool { return len(g.Ancestors) >= 3 && g.Ancestors[0].CreatedBy != nil })},
		{"crash", "signal", func(s *Snapshot) bool { return strings.HasPrefix(s.Reason, "panic: runtime error") }},
		{"timeout", "timeout", func(s *Snapshot) bool { return strings.HasPrefix(s.Reason, "panic: test timed out") }},
		{"timeout", "hung test", has(func(g Goroutine) bool {
			return g.State == "sync.Mutex.Lock" && g.Calls("github.com/lockwatch/lockwatch/stackdump/testdata/gen/timeout/hang.TestHang")
		})},
		{"hand-go117", "old created by", has(func(g Goroutine) bool { return g.CreatedBy != nil && g.CreatorID == 0 })},
		{"hand-go117", "stack unavailable", has(func(g Goroutine) bool { return g.StackUnavailable })},
		{"hand-go117", "additional frames elided", has(func(g Goroutine) bool { return g.Elided != nil && g.Elided.Count == 0 })},
		{"hand-go126", "labels and bubble", has(func(g Goroutine) bool { return g.Labels["path"] == `/a b"c` && g.Wait == 61*time.Minute })},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.what, func(t *testing.T) {
			if s := parseFile(t, filepath.Join("testdata", tt.file+".txt")); !tt.ok(s) {
				t.Errorf("testdata/%s.txt: got no %s; want one", tt.file, tt.what)
			}
		})
	}
}
