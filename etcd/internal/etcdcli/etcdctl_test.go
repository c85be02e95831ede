package etcdcli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdtest"
)

// buildEtcdctl builds etcd's own etcdctl, at the version etcd/tools/go.mod
// pins (the embedded server's), into a temporary directory. It skips the
// test, saying why, when the module cannot be had (no module proxy).
func buildEtcdctl(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "tools"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "etcdctl")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "go.etcd.io/etcd/etcdctl/v3")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("etcdctl (go.etcd.io/etcd/etcdctl/v3, pinned in etcd/tools/go.mod) could not be built: %v\n%s", err, b)
	}
	return out
}

// etcdctlLock starts `etcdctl lock PREFIX` (a process of its own, with its
// own session) and returns it with the lines it prints: the first is the
// key it holds, once it holds the lock.
func etcdctlLock(t *testing.T, etcdctl, endpoint, prefix string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(etcdctl, "--endpoints="+endpoint, "lock", prefix)
	return cmd, startLines(t, cmd)
}

// startLines starts cmd and returns the lines of its standard output; at
// the test's end it is killed, and what it wrote on its standard error
// logged.
func startLines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("%s: stderr: %s", strings.Join(cmd.Args, " "), stderr.String())
		}
	})
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines
}

// leaseOf returns the lease of key.
func leaseOf(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", key, err, len(resp.Kvs))
	}
	return resp.Kvs[0].Lease
}

// TestEtcdctlLock: etcd's own `etcdctl lock` (the real binary, at the
// server's version) holds an etcdreg lock's prefix; an etcdreg Mutex on
// the lock is excluded by it (TryLock fails, Lock waits), and a second
// `etcdctl lock` waits behind the etcdreg waiter. lockwatch-etcd attach
// of the prefix (etcd://HOST:PORT/?lock=PREFIX) names the holder by its key
// and lease, the waiters in queue order, the etcdreg one by its process;
// when the first etcdctl ends (SIGTERM: it closes its session), the lock
// goes to the etcdreg waiter, with a larger token, and on its release to
// the second etcdctl.
func TestEtcdctlLock(t *testing.T) {
	etcdctl := buildEtcdctl(t)
	srv, cli := serverClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mu := etcdtest.Mutex(t, cli, "ctl", "host-r", "q")
	prefix := mu.Prefix()
	ep := srv.Endpoints()[0]

	a, aLines := etcdctlLock(t, etcdctl, ep, prefix)
	var aKey string
	select {
	case aKey = <-aLines:
	case <-ctx.Done():
		t.Fatal("etcdctl lock printed no key")
	}
	if !strings.HasPrefix(aKey, prefix+"/") {
		t.Fatalf("etcdctl lock %s holds %q; want a key under the prefix", prefix, aKey)
	}
	aLease := leaseOf(t, cli, aKey)

	// Excluded by it: TryLock fails; Lock queues behind it.
	if ok, err := mu.TryLock(ctx); ok || err != nil {
		t.Fatalf("etcdreg TryLock while etcdctl lock holds %s: %v, %v; want false, nil", prefix, ok, err)
	}
	locked := make(chan error, 1)
	go func() { locked <- mu.Lock(ctx) }()
	etcdtest.WaitKeys(t, cli, prefix+"/", 2)
	b, bLines := etcdctlLock(t, etcdctl, ep, prefix)
	etcdtest.WaitKeys(t, cli, prefix+"/", 3)
	select {
	case err := <-locked:
		t.Fatalf("etcdreg Lock returned %v while etcdctl lock holds %s", err, prefix)
	default:
	}
	keys, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil || len(keys.Kvs) != 3 {
		t.Fatalf("keys under %s: %v, %v", prefix, keys, err)
	}
	regLease, bLease := keys.Kvs[1].Lease, keys.Kvs[2].Lease

	// Diagnosed: lockwatch-etcd attach, a process of its own.
	tool := filepath.Join(t.TempDir(), "lockwatch-etcd")
	selfAs(t, tool)
	url := etcdsrc.LockURL(srv.Endpoints(), []string{prefix})
	var out, errw bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, "attach", url)
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Run(); err != nil {
		t.Fatalf("lockwatch-etcd attach %s: %v\n%s%s", url, err, out.String(), errw.String())
	}
	text := out.String()
	t.Logf("lockwatch-etcd attach %s:\n%s", url, text)
	for _, want := range []string{
		"holder key " + aKey,
		fmt.Sprintf("lease %x", aLease),
		fmt.Sprintf("lease-%x", aLease), // the holder: a session, named by its lease
		"held since revision",
		"waiters (lease@revision, in order)",
		fmt.Sprintf("host-r/%d", os.Getpid()), // the etcdreg waiter, by its record
		"etcdctl_test.go",                     // and where it waits
	} {
		if !strings.Contains(text, want) {
			t.Errorf("attach output lacks %q", want)
		}
	}
	if i, j := strings.Index(text, fmt.Sprintf(" %x@", regLease)), strings.Index(text, fmt.Sprintf(" %x@", bLease)); i < 0 || j < i {
		t.Errorf("waiters not in queue order (etcdreg's lease %x, then etcdctl's %x)", regLease, bLease)
	}

	// The first etcdctl ends: its session's lease is revoked, its key
	// deleted; the etcdreg waiter holds, then the second etcdctl.
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("etcdreg Lock after etcdctl lock ended: %v", err)
	}
	ka, err := cli.Get(ctx, aKey)
	if err != nil || len(ka.Kvs) != 0 {
		t.Fatalf("etcdctl's key %s after it ended: %v, %v; want it gone", aKey, ka, err)
	}
	if tok := mu.Token(); tok != keys.Kvs[1].CreateRevision || tok <= keys.Kvs[0].CreateRevision {
		t.Errorf("etcdreg token %d; want its key's create revision %d, above etcdctl's %d", tok, keys.Kvs[1].CreateRevision, keys.Kvs[0].CreateRevision)
	}
	select {
	case line := <-bLines:
		t.Fatalf("the second etcdctl lock holds (%q) while etcdreg does", line)
	default:
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-bLines:
		if !strings.HasPrefix(line, prefix+"/") {
			t.Errorf("second etcdctl lock printed %q; want its key", line)
		}
	case <-ctx.Done():
		t.Fatal("the second etcdctl lock did not get the lock after etcdreg's release")
	}
	_ = b.Process.Signal(syscall.SIGTERM)
}

// TestWatchForeignStuck: lockwatch-etcd watch (a process of its own) of a
// prefix that the real `etcdctl lock` holds while a second one waits
// reports a stuck-holder once it has itself seen them so for
// --stuck-after, worded as a lower bound: etcd keeps no time, and neither
// contender is lockwatch's.
func TestWatchForeignStuck(t *testing.T) {
	etcdctl := buildEtcdctl(t)
	srv, cli := serverClient(t)
	ep := srv.Endpoints()[0]
	_, aLines := etcdctlLock(t, etcdctl, ep, "app/job")
	if key, ok := <-aLines; !ok || !strings.HasPrefix(key, "app/job/") {
		t.Fatalf("etcdctl lock app/job printed %q; want its key", key)
	}
	etcdctlLock(t, etcdctl, ep, "app/job")
	etcdtest.WaitKeys(t, cli, "app/job/", 2)

	tool := filepath.Join(t.TempDir(), "lockwatch-etcd")
	selfAs(t, tool)
	url := etcdsrc.LockURL(srv.Endpoints(), []string{"app/job"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lines := startLines(t, exec.CommandContext(ctx, tool, "watch", "-o", "json", "--interval", "100ms", "--stuck-after", "300ms", url))
	var reports []string
	for line := range lines {
		var r struct {
			Findings []struct {
				Kind    string `json:"kind"`
				Summary string `json:"summary"`
			} `json:"findings"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("watch printed %q: %v", line, err)
		}
		reports = append(reports, line)
		for _, f := range r.Findings {
			if f.Kind == "stuck-holder" {
				if !strings.Contains(f.Summary, "at least since lockwatch started watching it") {
					t.Errorf("stuck-holder %q; want it worded as a lower bound", f.Summary)
				}
				if len(reports) < 2 {
					t.Errorf("stuck-holder in watch's first report; want it only once watch has seen the holder for --stuck-after")
				}
				return
			}
		}
	}
	t.Fatalf("watch ended without a stuck-holder; reports:\n%s", strings.Join(reports, "\n"))
}
