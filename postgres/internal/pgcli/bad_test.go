package pgcli_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestServerRefuses: a server that is not there, a connection string that
// is not one, and a role the server does not know: one line each, exit 2.
func TestServerRefuses(t *testing.T) {
	url := needServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now
	unknownRole := strings.Replace(url, "postgres://postgres@", "postgres://nobody_here@", 1)
	tests := []struct {
		name, arg, want string
	}{
		{"nothing listens", "postgres://postgres@" + closed + "/postgres?sslmode=disable&connect_timeout=5", "cannot connect to postgres " + closed},
		{"not a connection string", "postgres://[::1", "connection string"},
		{"unknown role", unknownRole, `role "nobody_here" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := attach(t, tt.arg)
			if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("attach %s: exit %d, stdout %q, stderr %q; want 2, nothing, one line saying %q", tt.arg, code, out, errOut, tt.want)
			}
		})
	}
}

// TestWithoutReadAllStats: a role without pg_read_all_stats sees the lock
// graph but not other roles' sessions' state, client or query: the report
// says what is missing and what it costs, and still shows the wait.
func TestWithoutReadAllStats(t *testing.T) {
	url := needServer(t)
	c := connect(t, url)
	ctx := context.Background()
	if _, err := c.Exec(ctx, `DROP ROLE IF EXISTS lw_plain; CREATE ROLE lw_plain LOGIN`); err != nil {
		t.Fatal(err)
	}
	holder := startClient(t, url, "holder", nil, "BEGIN", "SELECT pg_advisory_xact_lock(4001)")
	holder.await(t, 1)
	waiter := startClient(t, url, "waiter", nil, "SELECT pg_advisory_lock(4001)")
	awaitWaiting(t, c, waiter.backend, 0)
	plain := strings.Replace(url, "postgres://postgres@", "postgres://lw_plain@", 1)
	out, errOut, code := attach(t, plain)
	if code != 0 {
		t.Errorf("attach as lw_plain exited %d; want 0 (no finding can be proved)\n%s", code, errOut)
	}
	for _, want := range []string{
		`role "lw_plain" lacks pg_read_all_stats`,
		"no dead-holder proof for them",
		`GRANT pg_read_all_stats TO "lw_plain"`,
		fmt.Sprintf("pg/%d", holder.backend),
		fmt.Sprintf("pg/%d", waiter.backend),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report says nothing of %q:\n%s", want, out)
		}
	}
}

// TestHostileStrings: an application_name and a query full of terminal
// escapes, bidirectional overrides and quotes reach the report escaped,
// in table and JSON.
func TestHostileStrings(t *testing.T) {
	url := needServer(t)
	c := connect(t, url)
	const nasty = "\x1b]0;pwned\x07\x1b[2J\u202e\r\n\"'"
	holder := startClient(t, url, "app"+nasty, nil, "BEGIN", "SELECT pg_advisory_xact_lock(5001) /* "+nasty+" */")
	holder.await(t, 1)
	waiter := startClient(t, url, "waiter", nil, "SELECT pg_advisory_lock(5001)")
	awaitWaiting(t, c, waiter.backend, 100*time.Millisecond)
	out, _, _ := attach(t, "--stuck-after", "50ms", url)
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\r"} {
		if strings.Contains(out, bad) {
			t.Errorf("the table holds %q unescaped:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, `\x1b]0;pwned\a\x1b[2J\u202e\r\n`) {
		t.Errorf("the table does not show the query's escapes escaped:\n%s", out)
	}
	r, _ := attachJSON(t, "--stuck-after", "50ms", url)
	found := false
	for _, l := range r.Locks {
		for _, f := range l.Facts {
			if strings.Contains(f.Value, "/* "+nasty) || strings.Contains(f.Value, `/* \u001b]0;pwned`) || strings.Contains(f.Value, `/* \x1b]0;pwned`) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("the JSON facts do not carry the query as it is (JSON escapes it): %+v", r.Locks)
	}
}
