package pgcli_test

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLockwatchRunsIt: lockwatch itself (the main module's binary, which
// links no PostgreSQL driver) hands attach postgres://... to lockwatch-pg
// beside it (this test binary, linked under that name), with its flags;
// a connection string that leaves everything out takes libpq's
// environment; flags for PostgreSQL alone are refused elsewhere, and
// lockwatch's own that do not apply are refused for PostgreSQL.
func TestLockwatchRunsIt(t *testing.T) {
	srvURL := needServer(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/lockwatch")
	build.Dir = filepath.Join("..", "..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build lockwatch: %v\n%s", err, out)
	}
	if err := os.Link(os.Args[0], filepath.Join(dir, "lockwatch-pg")); err != nil {
		t.Fatal(err)
	}
	lockwatch := filepath.Join(dir, "lockwatch")
	holder := startClient(t, srvURL, "holder", nil, "SELECT pg_advisory_lock(6001)")
	holder.await(t, 0)
	waiter := startClient(t, srvURL, "waiter", nil, "SELECT pg_advisory_lock(6001)")
	awaitWaiting(t, connect(t, srvURL), waiter.backend, 0)

	u, err := url.Parse(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	libpqEnv := []string{"PGHOST=" + u.Hostname(), "PGPORT=" + u.Port(), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable"}
	tests := []struct {
		name string
		args []string
		env  []string
	}{
		{"url", []string{"attach", "-o", "json", srvURL}, nil},
		{"postgresql scheme", []string{"attach", "-o", "json", strings.Replace(srvURL, "postgres://", "postgresql://", 1)}, nil},
		{"libpq environment", []string{"attach", "-o", "json", "postgres://"}, libpqEnv},
		{"server log passed on", []string{"attach", "-o", "json", "--server-log", filepath.Join(t.TempDir(), "none.log"), srvURL}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(lockwatch, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("lockwatch %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			var r jsonReport
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("lockwatch %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			held := false
			for _, l := range r.Locks {
				if l.Name == "postgres/advisory(6001)" && l.Holder != nil && l.Holder.PID == holder.backend {
					held = true
				}
			}
			if !held {
				t.Errorf("locks %+v; want postgres/advisory(6001) held by pg/%d", r.Locks, holder.backend)
			}
			if notes := strings.Join(r.Notes, "\n"); tt.name == "server log passed on" && !strings.Contains(notes, "none.log could not be read") {
				t.Errorf("notes %q; want one saying that the --server-log file could not be read", notes)
			}
		})
	}

	refused := []struct {
		args []string
		want string
	}{
		{[]string{"attach", "--terminate-dead", "4242"}, "attach: --terminate-dead is for PostgreSQL servers"},
		{[]string{"attach", "--server-log", "pg.log", "4242"}, "attach: --server-log is for PostgreSQL servers"},
		{[]string{"attach", "--live-stacks", "3", srvURL}, "attach: --live-stacks does not apply to PostgreSQL servers"},
	}
	for _, tt := range refused {
		out, err := exec.Command(lockwatch, tt.args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("lockwatch %s: %v, %q; want exit 2 and %q", strings.Join(tt.args, " "), err, out, tt.want)
		}
	}
}
