package etcdcli_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

// TestPsPrune: ps lists the runs kept in etcd with their processes and
// locks; prune removes the ended one (no live lease) and keeps the live
// one.
func TestPsPrune(t *testing.T) {
	srv, cli := serverClient(t)
	ctx := context.Background()
	live, err := etcdreg.Open(ctx, cli, "live", etcdreg.Options{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	m, _ := live.Mutex("q")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	ended, err := etcdreg.Open(ctx, cli, "ended", etcdreg.Options{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ended.Close(); err != nil {
		t.Fatal(err)
	}
	url := "etcd://" + strings.TrimPrefix(srv.Endpoints()[0], "http://")
	main := func(args ...string) string {
		t.Helper()
		var out, errw strings.Builder
		if err := etcdcli.Main(ctx, args, &out, &errw); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errw.String())
		}
		return out.String()
	}
	out := main("ps", url)
	if !regexp.MustCompile(`(?m)^ended\s+0\s+0\s+0\s+0\s+\d+$`).MatchString(out) || !regexp.MustCompile(`(?m)^live\s+1\s+1\s+1\s+0\s+\d+$`).MatchString(out) {
		t.Errorf("ps:\n%s\nwant ended (no process) and live (1 alive, 1 lock held)", out)
	}
	out = main("prune", url)
	if !strings.Contains(out, "removed ended") || !strings.Contains(out, "kept live: 1 process(es) alive, 1 lock(s) held") {
		t.Errorf("prune:\n%s\nwant ended removed, live kept", out)
	}
	if out := main("ps", url); strings.Contains(out, "ended") || !strings.Contains(out, "live") {
		t.Errorf("ps after prune:\n%s\nwant live only", out)
	}
}
