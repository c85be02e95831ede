package testroot

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// insideEnv makes the test binary a child whose TestMain is Run.
const insideEnv = "LOCKWATCH_TESTROOT_INSIDE"

func TestMain(m *testing.M) {
	if os.Getenv(insideEnv) != "" {
		os.Exit(Run(m, "lockwatch-testroot-"))
	}
	os.Exit(m.Run())
}

// TestInside runs in the child, under Run: it prints the root and a
// TempDir, both of which exist while the tests run.
func TestInside(t *testing.T) {
	if os.Getenv(insideEnv) == "" {
		t.Skip("runs in TestRun's child")
	}
	root := os.Getenv(arena.EnvRoot)
	dir, err := TempDir("lockwatch-testroot-made-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, dir} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Fatalf("%q: %v; want a directory", d, err)
		}
	}
	os.WriteFile(dir+"/file", []byte("x"), 0o600)
	os.Mkdir(root+"/run-x", 0o700)
	os.Stdout.WriteString("root " + root + "\nmade " + dir + "\n")
}

// TestRun: a test binary whose TestMain is Run runs its tests with
// $LOCKWATCH_ROOT set to a new directory, not the one it was given, and
// removes it and TempDir's directories, with what they hold, at the end.
func TestRun(t *testing.T) {
	given := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInside$", "-test.v")
	cmd.Env = append(os.Environ(), insideEnv+"=1", arena.EnvRoot+"="+given)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && (k == "root" || k == "made") {
			got[k] = v
		}
	}
	if got["root"] == "" || got["made"] == "" {
		t.Fatalf("child said no root or no directory:\n%s", out)
	}
	if got["root"] == given {
		t.Errorf("root %q is the one given; want a new one", given)
	}
	for _, d := range got {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%q left after the tests (%v)", d, err)
		}
	}
}
