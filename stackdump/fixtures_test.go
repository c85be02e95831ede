package stackdump

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
