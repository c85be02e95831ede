package pgcli_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/postgres/internal/pgtest"
	"github.com/lockwatch/lockwatch/postgres/pgsrc"
)

// TestServerLog: PostgreSQL breaks a real deadlock of two client
// processes; attach reads its log (the file pg_current_logfile() names,
// through the server, as superuser; and the stderr log given with
// --server-log) and names both sessions, their waits and the statement it
// cancelled. Each of the log's formats (stderr, csvlog, jsonlog) reads as
// the same deadlock. A role that may not run the log functions is told
// which grants it lacks; a server without logging_collector is said to
// name no file.
func TestServerLog(t *testing.T) {
	needServer(t)
	if cluster == nil {
		t.Skip("NOTE: a server given by " + pgtest.EnvServer + ": this test starts one with logging_collector on, from the PostgreSQL binaries")
	}
	srv, err := cluster.Start(pgtest.Options{Settings: []string{"logging_collector=on", "log_destination=stderr,csvlog,jsonlog"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := srv.URL()
	c := connect(t, url)
	ctx := context.Background()
	a := startClient(t, url, "dl-a", nil, "SET deadlock_timeout = '50ms'", "BEGIN", "SELECT pg_advisory_xact_lock(3001)", gate, "SELECT pg_advisory_xact_lock(3002)")
	b := startClient(t, url, "dl-b", nil, "SET deadlock_timeout = '50ms'", "BEGIN", "SELECT pg_advisory_xact_lock(3002)", gate, "SELECT pg_advisory_xact_lock(3001)")
	a.await(t, 2)
	b.await(t, 2)
	a.open(t)
	awaitWaiting(t, c, a.backend, 0)
	b.open(t) // one of them is cancelled: deadlock detected
	deadline := time.Now().Add(probablyStillBlocked)
	for n := 0; n == 0; {
		if err := c.QueryRow(ctx, "SELECT coalesce(sum(deadlocks), 0) FROM pg_stat_database").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL broke no deadlock within %s", probablyStillBlocked)
		}
		time.Sleep(poll)
	}
	pids := []string{strconv.Itoa(a.backend), strconv.Itoa(b.backend)}
	// The log is written by the collector a moment after the error.
	var notes string
	for deadline := time.Now().Add(probablyStillBlocked); ; time.Sleep(poll) {
		r, _ := attachJSON(t, url)
		notes = strings.Join(r.Notes, "\n")
		if strings.Contains(notes, "deadlock broken by PostgreSQL") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range append([]string{"deadlock broken by PostgreSQL", ".json, the last", "It cancelled process", "pg_advisory_xact_lock(300", "waits for ExclusiveLock on advisory lock"}, pids...) {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q do not say %q", notes, want)
		}
	}

	// The three formats of the same log read as the same deadlock.
	dir := filepath.Join(srv.Dir, "data", "log")
	var got []pgsrc.Deadlock
	for _, f := range []struct{ glob, format string }{{"*.log", "stderr"}, {"*.csv", "csvlog"}, {"*.json", "jsonlog"}} {
		files, _ := filepath.Glob(filepath.Join(dir, f.glob))
		if len(files) != 1 {
			t.Fatalf("%s: %d files %s; want 1", dir, len(files), f.glob)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		ds := pgsrc.ParseLog(f.format, data)
		if len(ds) != 1 {
			t.Fatalf("%s log %s: %d deadlocks %+v; want 1", f.format, files[0], len(ds), ds)
		}
		d := ds[0]
		if len(d.Waits) != 2 || len(d.Queries) != 2 || (d.PID != a.backend && d.PID != b.backend) || !strings.Contains(d.Statement, "pg_advisory_xact_lock(300") || d.At == "" {
			t.Errorf("%s log: %+v; want the waits and queries of sessions %v, the one cancelled, its statement and the time", f.format, d, pids)
		}
		got = append(got, d)
		if f.format == "stderr" {
			// The same file, given on this machine.
			out, _, _ := attach(t, "--server-log", files[0], url)
			if !strings.Contains(out, "deadlock broken by PostgreSQL") || !strings.Contains(out, pids[0]) {
				t.Errorf("--server-log %s: the report does not show the deadlock:\n%s", files[0], out)
			}
		}
	}
	for _, d := range got[1:] {
		if d.PID != got[0].PID || strings.Join(d.Waits, "|") != strings.Join(got[0].Waits, "|") || d.Statement != got[0].Statement {
			t.Errorf("formats disagree: %+v against the stderr log's %+v", d, got[0])
		}
	}

	// A role without the log functions' grants is told what it lacks.
	if _, err := c.Exec(ctx, `DROP ROLE IF EXISTS lw_nolog; CREATE ROLE lw_nolog LOGIN`); err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(url, "postgres://postgres@", "postgres://lw_nolog@", 1)
	r, _ := attachJSON(t, plain)
	notes = strings.Join(r.Notes, "\n")
	for _, want := range []string{`role "lw_nolog" may not execute pg_catalog.pg_current_logfile(text)`, `GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text,bigint,bigint,boolean) TO "lw_nolog"`, "--server-log"} {
		if !strings.Contains(notes, want) {
			t.Errorf("a role without grants: notes %q do not say %q", notes, want)
		}
	}

	// The tests' own server logs to its stderr, which no function names.
	r, _ = attachJSON(t, needServer(t))
	if notes := strings.Join(r.Notes, "\n"); private != nil && !strings.Contains(notes, "logging_collector off") {
		t.Errorf("a server without logging_collector: notes %q; want one that says so", notes)
	}
}
