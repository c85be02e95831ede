package pgsrc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/postgres/internal/pgtest"
	"github.com/lockwatch/lockwatch/postgres/pgsrc"
)

var (
	server string
	noPG   error
)

func TestMain(m *testing.M) {
	var stop func()
	var err error
	server, _, _, stop, err = pgtest.ForTests()
	switch {
	case errors.Is(err, pgtest.ErrNoPostgres):
		noPG = err
		fmt.Fprintf(os.Stderr, "NOTE: the PostgreSQL tests are skipped: %v\n", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func needServer(tb testing.TB) string {
	tb.Helper()
	if server == "" {
		tb.Skipf("NOTE: no PostgreSQL server: %v", noPG)
	}
	return server
}

// countingConn counts the writes to a connection: each is a message (or a
// batch of them) sent to the server, which a round trip starts with.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestOneRoundTrip: Read sends the server one message and reads the lock
// graph from its answer: pg_locks, pg_stat_activity and pg_blocking_pids()
// in one round trip, however many sessions wait.
func TestOneRoundTrip(t *testing.T) {
	url := needServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// A holder and two waiters, so that pg_blocking_pids() has work.
	holder := open(t, url)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(7001)"); err != nil {
		t.Fatal(err)
	}
	waiters := wait(t, url, 2, 7001)
	defer waiters.Wait() // they get the lock when the holder's session ends
	defer holder.Close(ctx)
	awaitWaiters(t, holder, 2)

	src := pgsrc.New(conn, "test")
	writes.Store(0)
	snap, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 1 {
		t.Errorf("Read wrote to the server %d times; want 1 (one round trip)", n)
	}
	for _, l := range snap.Locks {
		if l.Name == "postgres/advisory(7001)" && len(l.Holders) == 1 && len(l.Waiters) == 2 {
			return
		}
	}
	t.Errorf("locks %+v; want postgres/advisory(7001) with 1 holder and 2 waiters", snap.Locks)
}

// open opens a session, closed when the test ends (which ends its waits).
func open(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// wait starts n sessions waiting for advisory lock key; each ends when it
// has had the lock.
func wait(tb testing.TB, url string, n int, key int64) *sync.WaitGroup {
	tb.Helper()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			tb.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Exec(context.Background(), "SELECT pg_advisory_lock($1)", key)
			c.Close(context.Background())
		}()
	}
	return &wg
}

// awaitWaiters waits until n sessions wait for a lock.
func awaitWaiters(tb testing.TB, c *pgx.Conn, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&got); err != nil {
			tb.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d sessions wait for a lock after 30s; want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
