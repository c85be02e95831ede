package pgtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/postgres/internal/pgtest"
)

// TestStart starts a private server and reaches it on both its loopback
// port and its unix socket.
func TestStart(t *testing.T) {
	c, err := pgtest.Init("")
	if errors.Is(err, pgtest.ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, url := range []string{srv.URL(), srv.SocketURL()} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect %s: %v", url, err)
		}
		var one int
		if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("select 1 over %s = %d, %v; want 1", url, one, err)
		}
		conn.Close(ctx)
	}
}
