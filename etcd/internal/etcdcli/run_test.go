package etcdcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
	"github.com/lockwatch/lockwatch/etcd/internal/etcddemo"
	"github.com/lockwatch/lockwatch/report"
)

// The test binary is also the demo: with envDemo set it runs etcddemo.Main
// (main, and the writer and workers it starts from the same binary). Named
// lockwatch-etcd (a link that TestLockwatchRunsIt makes), it is
// lockwatch-etcd.
const envDemo = "ETCDCLI_TEST_DEMO"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "lockwatch-etcd" {
		err := etcdcli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
		var ee *etcdcli.ExitError
		switch {
		case errors.As(err, &ee):
			os.Exit(ee.Code)
		case err != nil:
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envOpen) != "" {
		os.Exit(openFromEnv())
	}
	if role := os.Getenv(envLeader); role != "" {
		os.Exit(leaderRole(role)) // leader_test.go
	}
	if os.Getenv(envDemo) != "" {
		err := etcddemo.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
		var ee *etcddemo.ExitError
		switch {
		case errors.As(err, &ee):
			os.Exit(ee.Code)
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunDemo: lockwatch-etcd run starts an embedded etcd, the demo
// deadlocks with a worker killed holding queue.wlock, and the report
// (lockwatch's own, in --report) names the dead holder's host, pid,
// goroutine and acquire stack, and main waiting; the exit status is 124, as
// lockwatch run's.
func TestRunDemo(t *testing.T) {
	t.Setenv(envDemo, "1")
	t.Setenv("TMPDIR", t.TempDir())
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reportFile := filepath.Join(t.TempDir(), "report.json")
	err = etcdcli.Main(ctx, []string{"run", "--on-deadlock=kill", "-o", "json", "--report", reportFile, "--", os.Args[0], "--backend", "etcd"}, &out, &errw)
	var ee *etcdcli.ExitError
	if !errors.As(err, &ee) || ee.Code != 124 {
		t.Fatalf("run: %v; want exit status 124\nstdout:\n%s\nstderr:\n%s", err, out.String(), errw.String())
	}
	if !regexp.MustCompile(`attach with: lockwatch attach etcd://127\.0\.0\.1:\d+/run-`).MatchString(errw.String()) {
		t.Errorf("run did not say how to attach with lockwatch:\n%s", errw.String())
	}
	js, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`worker (\d+) holds queue.wlock`).FindStringSubmatch(errw.String())
	if m == nil {
		t.Fatalf("the demo did not say which worker held the lock:\n%s", errw.String())
	}
	var r struct {
		Schema   string `json:"schema"`
		Run      string `json:"run"`
		Findings []struct {
			Kind     string `json:"kind"`
			Lock     string `json:"lock"`
			LockKind string `json:"lock_kind"`
			Next     string `json:"next"`
			Holder   struct {
				Host      string `json:"host"`
				PID       int    `json:"pid"`
				Goroutine int64  `json:"goroutine"`
				Role      string `json:"role"`
				State     string `json:"state"`
				Death     string `json:"death"`
				Where     *struct {
					Func string `json:"func"`
				} `json:"where"`
			} `json:"holder"`
			Waiters []struct {
				Role string `json:"role"`
			} `json:"waiters"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, js)
	}
	if r.Schema != report.Schema || len(r.Findings) == 0 || !strings.HasPrefix(r.Run, "etcd://127.0.0.1:") {
		t.Fatalf("report %+v; want lockwatch's report of an etcd:// run, with a finding", r)
	}
	f := r.Findings[0]
	h := f.Holder
	if f.Kind != "dead-holder" || f.Lock != "queue.wlock" || f.LockKind != "etcd" || fmt.Sprint(h.PID) != m[1] || h.Host != host ||
		h.Role != "worker" || h.State != "dead" || h.Death != "gone" || h.Goroutine == 0 || h.Where == nil || !strings.HasSuffix(h.Where.Func, "etcddemo.send") {
		t.Errorf("finding %+v; want dead-holder of etcd lock queue.wlock by worker %s on %s, dead (gone), acquired in etcddemo.send", f, m[1], host)
	}
	mainWaits := false
	for _, w := range f.Waiters {
		mainWaits = mainWaits || w.Role == "main"
	}
	if !mainWaits || !strings.Contains(f.Next, "etcd deletes its key when its lease") {
		t.Errorf("finding %+v; want main among the waiters, and when etcd frees the lock in the next step", f)
	}
	left, _ := os.ReadDir(os.Getenv("TMPDIR"))
	if len(left) != 0 {
		t.Errorf("left in the temporary directory: %v; want the embedded etcd's data removed", left)
	}
}
