package pgcli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/postgres/internal/pgcli"
	"github.com/lockwatch/lockwatch/postgres/internal/pgtest"
)

// Roles of this test binary, chosen by its environment.
const (
	envClient = "LOCKWATCH_PG_TEST_CLIENT" // a client: connect here, run envSQL
	envSQL    = "LOCKWATCH_PG_TEST_SQL"    // the client's statements, a JSON array
	envApp    = "LOCKWATCH_PG_TEST_APP"    // the client's application_name
)

// Named waits.
const (
	// probablyStillBlocked bounds waits for a state a test brought about:
	// a client's session waiting for a lock, a process ending.
	probablyStillBlocked = 30 * time.Second
	poll                 = 20 * time.Millisecond
)

// server is the server the tests use: a private one started here, or the
// one $LOCKWATCH_TEST_POSTGRES names; "" when there is neither (skipped).
var (
	server  string
	private *pgtest.Server // nil: the server was given
	cluster *pgtest.Cluster
	noPG    error
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "lockwatch-pg" {
		err := pgcli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
		var ee *pgcli.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	if url := os.Getenv(envClient); url != "" {
		client(url)
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var stop func()
	var err error
	server, private, cluster, stop, err = pgtest.ForTests()
	defer stop()
	switch {
	case errors.Is(err, pgtest.ErrNoPostgres):
		noPG = err
		fmt.Fprintf(os.Stderr, "NOTE: the PostgreSQL tests are skipped: %v\n", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// needServer skips a test, visibly, when there is no server.
func needServer(t *testing.T) string {
	t.Helper()
	if server == "" {
		t.Skipf("NOTE: no PostgreSQL server: %v", noPG)
	}
	return server
}

// client is a client process: it connects to url, prints its backend pid,
// runs each statement of envSQL, printing "done N" after each (the last
// may block, waiting for a lock), then waits for its stdin to close.
func client(url string) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	cfg.RuntimeParams["application_name"] = os.Getenv(envApp)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", conn.PgConn().PID())
	var stmts []string
	if err := json.Unmarshal([]byte(os.Getenv(envSQL)), &stmts); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	in := bufio.NewReader(os.Stdin)
	for i, s := range stmts {
		if s == gate { // wait for the test's word
			if _, err := in.ReadString('\n'); err != nil {
				os.Exit(0)
			}
			fmt.Println("done", i)
			continue
		}
		if _, err := conn.Exec(ctx, s); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("done", i)
	}
	io.Copy(io.Discard, in)
	conn.Close(ctx)
}

// gate, as a client's statement, makes it wait for a line on its stdin.
const gate = "GATE"

// open lets a client past its gate.
func (p *proc) open(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "\n"); err != nil {
		t.Fatal(err)
	}
}

// A proc is a client process of a test.
type proc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	backend int // its session's backend pid
}

// startClient starts a client process (prefix: a command to run it with,
// such as ip netns exec NS) and waits for its session's pid.
func startClient(t *testing.T, url, app string, prefix []string, stmts ...string) *proc {
	t.Helper()
	sql, _ := json.Marshal(stmts)
	argv := append(append([]string{}, prefix...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), envClient+"="+url, envSQL+"="+string(sql), envApp+"="+app)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 100)}
	t.Cleanup(p.stop)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	l := p.next(t)
	pid, err := strconv.Atoi(strings.TrimPrefix(l, "pid "))
	if err != nil {
		t.Fatalf("client said %q; want its backend pid", l)
	}
	p.backend = pid
	return p
}

// next returns the client's next line.
func (p *proc) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("client %d ended", p.cmd.Process.Pid)
		}
		if strings.HasPrefix(l, "error") {
			t.Fatalf("client %d: %s", p.cmd.Process.Pid, l)
		}
		return l
	case <-time.After(probablyStillBlocked):
		t.Fatalf("client %d said nothing for %s", p.cmd.Process.Pid, probablyStillBlocked)
	}
	return ""
}

// await reads the client's lines until "done N".
func (p *proc) await(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf("done %d", n)
	for l := p.next(t); l != want; l = p.next(t) {
	}
}

func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// connect opens a session for the test itself.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probablyStillBlocked)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// awaitWaiting waits until the backend pid has waited for a lock at least
// d, by the server's clock.
func awaitWaiting(t *testing.T, c *pgx.Conn, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		var ok bool
		err := c.QueryRow(context.Background(), `SELECT coalesce(bool_or(now() - waitstart >= $2::interval), false) FROM pg_locks WHERE pid = $1 AND NOT granted`,
			pid, d.String()).Scan(&ok)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %d has not waited for a lock %s within %s", pid, d, probablyStillBlocked)
		}
		time.Sleep(poll)
	}
}

// attach runs lockwatch-pg attach (in this process) and returns its
// output and exit status.
func attach(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), probablyStillBlocked)
	defer cancel()
	err := pgcli.Main(ctx, append([]string{"attach"}, args...), &o, &e)
	var ee *pgcli.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.Code
	case err != nil:
		t.Fatalf("attach: %v", err)
	}
	return o.String(), e.String(), code
}
