package pgsrc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/lockstate/lockstatetest"
	"github.com/lockwatch/lockwatch/postgres/pgsrc"
	"github.com/lockwatch/lockwatch/procid"
)

// TestConformance: PostgreSQL's source passes the suite, its locks
// advisory locks of sessions of a real server (pgtest's, or the one
// $LOCKWATCH_TEST_POSTGRES names), its cycles with a deadlock_timeout long
// enough that PostgreSQL's detector has not broken them.
func TestConformance(t *testing.T) {
	needServer(t)
	lockstatetest.Run(t, pgHarness{})
}

type pgHarness struct{}

// keys are the advisory locks a scenario takes: distinct in each run of
// the suite, so that scenarios sharing a server never meet.
var keys = time.Now().UnixNano() % 1e9 * 10

func (pgHarness) Realize(t *testing.T, s lockstatetest.Scenario) (*lockstatetest.Setup, error) {
	url := needServer(t)
	switch s {
	case lockstatetest.DeadHolder:
		return nil, lockstatetest.Cannot("a session is proved dead only when its client's end of the connection is orphaned while the server has not seen it close, which takes a client in another network namespace (internal/pgcli's netns test, as root), not a quick harness")
	case lockstatetest.LostLock:
		return nil, lockstatetest.Cannot("PostgreSQL never takes a lock from a live session: it is held until released or its transaction or session ends")
	case lockstatetest.CycleKinds:
		return nil, lockstatetest.Cannot("every lock of a server is of the one kind %q", pgsrc.Kind)
	case lockstatetest.SelfDeadlock:
		return nil, lockstatetest.Cannot("a session never waits for a lock it holds: PostgreSQL grants it again (its locks are reentrant within a session)")
	}
	keys += 10
	k1, k2 := keys+1, keys+2
	obs := open(t, url) // watches the server, and is the source's connection
	var db string
	if err := obs.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	key := func(k int64) lockstate.Key {
		return lockstate.Key{Kind: pgsrc.Kind, Name: fmt.Sprintf("%s/advisory(%d)", db, k)}
	}
	setup := &lockstatetest.Setup{}
	switch s {
	case lockstatetest.Cycle:
		a, b := session(t, url), session(t, url)
		a.exec(t, "SET deadlock_timeout = '10min'", "BEGIN", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", k1))
		b.exec(t, "SET deadlock_timeout = '10min'", "BEGIN", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", k2))
		a.block(t, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", k2))
		b.block(t, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", k1))
		setup.Locks, setup.Loop = []lockstate.Key{key(k1), key(k2)}, []procid.ID{a.id, b.id}
		awaitWaiters(t, obs, 2)
	case lockstatetest.StuckHolder, lockstatetest.NoFinding:
		h, w := session(t, url), session(t, url)
		h.exec(t, "BEGIN", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", k1)) // then idle in transaction
		w.block(t, fmt.Sprintf("SELECT pg_advisory_lock(%d)", k1))
		setup.Lock, setup.Holder, setup.Waiter = key(k1), h.id, w.id
		awaitWaiters(t, obs, 1)
		if s == lockstatetest.StuckHolder {
			setup.StuckAfter = 50 * time.Millisecond
			// The waiter's wait_start is the server's clock: wait until
			// the server says it has waited twice StuckAfter.
			awaitWaited(t, obs, 2*setup.StuckAfter)
		}
	case lockstatetest.Readers:
		r1, r2, w := session(t, url), session(t, url), session(t, url)
		r1.exec(t, fmt.Sprintf("SELECT pg_advisory_lock_shared(%d)", k1))
		r2.exec(t, fmt.Sprintf("SELECT pg_advisory_lock_shared(%d)", k1))
		w.block(t, fmt.Sprintf("SELECT pg_advisory_lock(%d)", k1))
		setup.Lock, setup.Holder = key(k1), r1.id
		awaitWaiters(t, obs, 1)
	}
	setup.Sources = pgsrc.New(obs, "test").Sources()
	return setup, nil
}

// pgSession is a session of the server and its backend pid.
type pgSession struct {
	conn *pgx.Conn
	id   procid.ID
}

func session(t *testing.T, url string) *pgSession {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	// Closed when the test ends, after a blocked statement's goroutine
	// (block) has seen its connection cancelled.
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.PgConn().Close(context.Background()) }) //nolint:errcheck // ends its session
	return &pgSession{conn: c, id: procid.ID{Host: pgsrc.Host, PID: pid}}
}

func (p *pgSession) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := p.conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// block runs q, which waits for a lock, until the test ends (its session
// closed by the cleanup of session).
func (p *pgSession) block(t *testing.T, q string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.conn.Exec(ctx, q) //nolint:errcheck // ends with the test
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// awaitWaited waits until every lock wait of the server is older than age
// by the server's clock.
func awaitWaited(t *testing.T, c *pgx.Conn, age time.Duration) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var young bool
		err := c.QueryRow(context.Background(),
			"SELECT coalesce(bool_or(waitstart IS NULL OR clock_timestamp() - waitstart <= make_interval(secs => $1)), false) FROM pg_locks WHERE NOT granted", age.Seconds()).Scan(&young)
		if err != nil {
			t.Fatal(err)
		}
		if !young {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a lock wait is still younger than %s after 30s", age)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
