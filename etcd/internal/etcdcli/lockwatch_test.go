package etcdcli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLockwatchRunsIt: the one command a user types. lockwatch itself (the
// main module's binary, which does not link etcd) runs the demo with its
// locks in an embedded etcd (run --backend etcd) through lockwatch-etcd
// beside it (this test binary, linked under that name); while the demo
// hangs, 'lockwatch attach etcd://HOST:PORT/RUN', as run says, reports the
// dead holder and exits 3; SIGTERM to lockwatch reaches the run and ends
// it, with its status; nothing is left in the temporary directory.
func TestLockwatchRunsIt(t *testing.T) {
	lockwatch := filepath.Join(lockwatchBeside(t), "lockwatch")
	tmp := t.TempDir()
	env := append(os.Environ(), "TMPDIR="+tmp)

	run := exec.Command(lockwatch, "run", "--backend", "etcd", "--", os.Args[0], "--backend", "etcd")
	run.Env = append(env, envDemo+"=1")
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	run.Stdout = io.Discard
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if run.ProcessState == nil {
			syscall.Kill(run.Process.Pid, syscall.SIGKILL)
			run.Wait()
		}
	}()
	// Read lockwatch's stderr (the demo's and lockwatch-etcd's lines, the
	// report) until the deadlock is found; keep reading it after.
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var url, holder string
	var seen []string
	deadline := time.After(3 * time.Minute)
	for url == "" || holder == "" || !strings.Contains(strings.Join(seen, "\n"), "deadlock found; the program is kept running") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("lockwatch's stderr ended before the deadlock:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if m := regexp.MustCompile(`attach with: lockwatch attach (etcd://\S+)$`).FindStringSubmatch(l); m != nil {
				url = m[1]
			}
			if m := regexp.MustCompile(`worker (\d+) holds queue.wlock`).FindStringSubmatch(l); m != nil {
				holder = m[1]
			}
		case <-deadline:
			t.Fatalf("no deadlock reported within 3 minutes:\n%s", strings.Join(seen, "\n"))
		}
	}
	go func() {
		for range lines { // drain: the program must never block on its stderr
		}
	}()

	attach := exec.Command(lockwatch, "attach", "-o", "json", url)
	attach.Env = env
	var out, errb bytes.Buffer
	attach.Stdout, attach.Stderr = &out, &errb
	err = attach.Run()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 3 {
		t.Fatalf("lockwatch attach %s: %v; want exit status 3\n%s%s", url, err, out.String(), errb.String())
	}
	var r struct {
		Run      string `json:"run"`
		Findings []struct {
			Kind   string `json:"kind"`
			Lock   string `json:"lock"`
			Holder struct {
				PID   int    `json:"pid"`
				Host  string `json:"host"`
				State string `json:"state"`
			} `json:"holder"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("attach's report: %v\n%s", err, out.String())
	}
	if r.Run != url || len(r.Findings) == 0 || r.Findings[0].Kind != "dead-holder" || r.Findings[0].Lock != "queue.wlock" ||
		holder != strconv.Itoa(r.Findings[0].Holder.PID) || r.Findings[0].Holder.State != "dead" || r.Findings[0].Holder.Host == "" {
		t.Errorf("attach's report %+v; want %s's dead-holder of queue.wlock by worker %s", r, url, holder)
	}

	if err := run.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = run.Wait()
	if !errors.As(err, &xe) || xe.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("lockwatch run after SIGTERM: %v; want exit status %d (the demo's main ended by the signal)", err, 128+int(syscall.SIGTERM))
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the temporary directory: %v; want the embedded etcd's data removed", left)
	}
}

// lockwatchBeside returns a temporary directory holding lockwatch, built in
// the main module (the repository's root, three levels up) as 'make build'
// builds it, and beside it this test binary as lockwatch-etcd.
func lockwatchBeside(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/lockwatch")
	build.Dir = filepath.Join("..", "..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build lockwatch: %v\n%s", err, out)
	}
	selfAs(t, filepath.Join(dir, "lockwatch-etcd"))
	return dir
}

// selfAs makes path this test binary (a hard link, else a copy), which runs
// as lockwatch-etcd when so named (TestMain).
func selfAs(t *testing.T, path string) {
	t.Helper()
	if err := os.Link(os.Args[0], path); err != nil {
		b, err := os.ReadFile(os.Args[0])
		if err == nil {
			err = os.WriteFile(path, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
