package etcdcli_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
)

// TestLockwatchDispatch: lockwatch itself (the main module's binary) hands
// to lockwatch-etcd beside it, against a real etcd: attach of a lock
// prefix taken with etcd's own concurrency.Mutex
// (etcd://HOST:PORT/?lock=PREFIX), ps of the runs kept in etcd, and prune
// of the ended one.
func TestLockwatchDispatch(t *testing.T) {
	lockwatch := filepath.Join(lockwatchBeside(t), "lockwatch")
	srv, cli := serverClient(t)
	ctx := context.Background()
	lw := func(wantCode int, args ...string) string {
		t.Helper()
		c := exec.Command(lockwatch, args...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if code := exitCode(t, c.Run()); code != wantCode {
			t.Fatalf("lockwatch %s: exit %d; want %d\n%s%s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String()
	}

	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	theirs := concurrency.NewMutex(s, "app/A")
	if err := theirs.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	url := etcdsrc.LockURL(srv.Endpoints(), []string{"app/A"})
	out := lw(0, "attach", url)
	if !strings.Contains(out, "holder key app/A/") || !strings.Contains(out, "lease-") {
		t.Errorf("lockwatch attach %s:\n%s\nwant the session holding app/A", url, out)
	}

	live, err := etcdreg.Open(ctx, cli, "live", etcdreg.Options{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	ended, err := etcdreg.Open(ctx, cli, "ended", etcdreg.Options{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ended.Close(); err != nil {
		t.Fatal(err)
	}
	cluster := "etcd://" + strings.TrimPrefix(srv.Endpoints()[0], "http://")
	out = lw(0, "ps", cluster)
	if !regexp.MustCompile(`(?m)^ended\s`).MatchString(out) || !regexp.MustCompile(`(?m)^live\s+1\s+1\s`).MatchString(out) {
		t.Errorf("lockwatch ps %s:\n%s\nwant ended and live (1 process, alive)", cluster, out)
	}
	out = lw(0, "prune", cluster)
	if !strings.Contains(out, "removed ended") || !strings.Contains(out, "kept live") {
		t.Errorf("lockwatch prune %s:\n%s\nwant ended removed, live kept", cluster, out)
	}
	lw(2, "prune", "--dry-run", cluster) // refused, not ignored
}

// serverClient starts an embedded etcd and a client of it, both ended
// with the test.
func serverClient(t *testing.T) (*embedded.Server, *clientv3.Client) {
	t.Helper()
	srv, err := embedded.Start(filepath.Join(t.TempDir(), "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return srv, cli
}

// exitCode is the exit status of a command that ran with error err.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return xe.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}
