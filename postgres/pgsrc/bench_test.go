package pgsrc_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/postgres/internal/clientproc"
	"github.com/lockwatch/lockwatch/postgres/pgsrc"
	"github.com/lockwatch/lockwatch/report"
)

// BenchmarkAttach is lockwatch attach on a server with 1,000 sessions and
// 10,000 advisory locks held (900 sessions hold 11 each, 100 hold one and
// wait for one of the others'): read=pgsrc is Read alone (the one round
// trip, its JSON, the model, the clients looked for in /proc),
// attach=pgsrc is the whole report (Diagnose, Explain, the table), and
// read=pg_locks, the peer, reads every row of pg_locks and
// pg_stat_activity with pgx (what a script would start from).
//
// server=idle is the same on the server with no session but the
// benchmark's own: what attach costs at the least.
func BenchmarkAttach(b *testing.B) {
	url := needServer(b)
	ctx := context.Background()
	b.Run("server=idle", func(b *testing.B) {
		conn := open(b, url)
		benchAttach(b, conn, 1)
	})
	b.Run("server=1000x10000", func(b *testing.B) {
		admin := busyServer(b, url)
		conn := open(b, url)
		if testing.Verbose() {
			rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE) "+pgsrc.Query, pgx.QueryExecModeSimpleProtocol)
			if err == nil {
				for rows.Next() {
					var line string
					rows.Scan(&line)
					b.Log(line)
				}
				rows.Close()
			}
		}
		b.Run("part=clients", func(b *testing.B) {
			var cs []clientproc.Conn
			rows, err := admin.Query(ctx, "SELECT host(client_addr), client_port, current_setting('port')::int, pid FROM pg_stat_activity WHERE application_name = 'lwbench'")
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var a string
				var p, sp, pid int
				if err := rows.Scan(&a, &p, &sp, &pid); err != nil {
					b.Fatal(err)
				}
				cs = append(cs, clientproc.Conn{Addr: netip.MustParseAddr(a), Port: p, ServerPort: sp, Backend: pid})
			}
			for b.Loop() {
				clientproc.Find(cs)
			}
		})
		benchAttach(b, conn, 10000)
	})
}

// busyServer sets up 1,000 sessions holding 10,000 advisory locks, 100
// of them waiting, for the benchmark; it returns a superuser session.
func busyServer(b *testing.B, url string) *pgx.Conn {
	ctx := context.Background()
	const holders, each, waiters = 900, 11, 100
	conns := make([]*pgx.Conn, holders+waiters)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cfg, err := pgx.ParseConfig(url)
				if err == nil {
					cfg.RuntimeParams["application_name"] = "lwbench"
					conns[i], err = pgx.ConnectConfig(ctx, cfg)
				}
				if err == nil && i < holders {
					_, err = conns[i].Exec(ctx, "SELECT pg_advisory_lock(k) FROM generate_series($1::bigint, $2::bigint) k", i*each+1, (i+1)*each)
				}
				if err == nil && i >= holders {
					_, err = conns[i].Exec(ctx, "SELECT pg_advisory_lock($1::bigint)", 1_000_000+i)
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	admin := open(b, url)
	var waiting sync.WaitGroup
	b.Cleanup(func() {
		// End the sessions (the waiters' waits fail), then join.
		admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lwbench'")
		waiting.Wait()
		for _, c := range conns {
			if c != nil {
				c.Close(ctx)
			}
		}
	})
	if firstErr != nil {
		b.Fatalf("setting up 1,000 sessions: %v", firstErr)
	}
	for i := holders; i < holders+waiters; i++ {
		waiting.Add(1)
		go func(c *pgx.Conn, key int) {
			defer waiting.Done()
			c.Exec(ctx, "SELECT pg_advisory_lock($1::bigint)", key) // until terminated
		}(conns[i], (i-holders)*each+1)
	}
	awaitWaiters(b, admin, waiters)
	var sessions, locks int
	if err := admin.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lwbench'), (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted)").Scan(&sessions, &locks); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d sessions, %d advisory locks held, %d waiting", sessions, locks, waiters)

	return admin
}

// benchAttach is the benchmarks of one server: Read, the query alone,
// the whole attach, and the peer, which reads every row of pg_locks and
// pg_stat_activity (at least minRows of them).
func benchAttach(b *testing.B, conn *pgx.Conn, minRows int) {
	ctx := context.Background()
	src := pgsrc.New(conn, "bench")
	backend := int(conn.PgConn().PID())
	b.Run("read=pgsrc", func(b *testing.B) {
		defer cpu(b, backend)()
		for b.Loop() {
			if _, err := src.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("part=query", func(b *testing.B) {
		for b.Loop() {
			var doc []byte
			if err := conn.QueryRow(ctx, pgsrc.Query, pgx.QueryExecModeSimpleProtocol).Scan(&doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("part=connect", func(b *testing.B) {
		// Connecting and closing, as lockwatch-pg does once per report
		// (the test server trusts its clients and has no TLS: a server
		// with SCRAM and TLS costs their handshakes more).
		url := conn.Config().ConnString()
		for b.Loop() {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				b.Fatal(err)
			}
			c.Close(ctx)
		}
	})
	b.Run("part=serverlog", func(b *testing.B) {
		// Looking for the server's log and reading its tail: what attach
		// does after the lock graph.
		defer cpu(b, backend)()
		for b.Loop() {
			src.ServerLog(ctx, "")
		}
	})
	b.Run("attach=pgsrc", func(b *testing.B) {
		// What lockwatch-pg attach does: the report (two reads of the lock
		// graph), PostgreSQL's words, its log looked for, the table.
		defer cpu(b, backend)()
		for b.Loop() {
			r, err := report.Diagnose(ctx, src.Sources(), report.Options{StuckAfter: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			src.Explain(r)
			r.Notes = append(r.Notes, src.ServerLog(ctx, "")...)
			if err := r.Write(io.Discard, report.Style{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read=pg_locks", func(b *testing.B) {
		defer cpu(b, backend)()
		for b.Loop() {
			n := 0
			for _, q := range []string{"SELECT * FROM pg_locks", "SELECT * FROM pg_stat_activity"} {
				rows, err := conn.Query(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
					if _, err := rows.Values(); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
			}
			if n < minRows {
				b.Fatalf("read %d rows; want %d and more", n, minRows)
			}
		}
	})
}

// cpu reports, when the returned func is called at the end of a
// benchmark, the CPU time per op of this process (lockwatch's side:
// decoding, the model, /proc) and of the server's backend process of the
// session it reads through (the query), so that a loaded machine's wall
// times can be read beside what each side spent.
func cpu(b *testing.B, backend int) func() {
	self0, srv0 := selfCPU(), procCPU(backend)
	return func() {
		n := float64(b.N)
		b.ReportMetric(float64(selfCPU()-self0)/1e6/n, "cpu-ms/op")
		if s := procCPU(backend); s >= 0 && srv0 >= 0 {
			b.ReportMetric(float64(s-srv0)/1e6/n, "server-cpu-ms/op")
		}
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is utime+stime of pid (fields 14 and 15 of /proc/PID/stat, in
// clock ticks of 10 ms), or -1.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
