// Package pgtest starts private PostgreSQL servers for tests: a cluster made
// once with initdb (as the unprivileged user "postgres", else "nobody",
// when the tests run as root, since initdb and postgres refuse root), then
// copied for each server, which listens on a unix socket in its own
// directory and on a loopback port. A test that is given a server instead
// ($LOCKWATCH_TEST_POSTGRES, a connection string) uses that one.
//
//	c, err := pgtest.Init(dir) // once: initdb
//	srv, err := c.Start(pgtest.Options{})
//	defer srv.Stop()
//	conn, err := pgx.Connect(ctx, srv.URL())
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvServer names a server to test against instead of a private one: a
// connection string of a superuser (the tests create roles and set
// deadlock_timeout).
const EnvServer = "LOCKWATCH_TEST_POSTGRES"

// ErrNoPostgres: neither PostgreSQL's binaries nor $LOCKWATCH_TEST_POSTGRES.
var ErrNoPostgres = errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or on PATH, and no $" + EnvServer + ": install postgresql (apt-get install -y postgresql) or set $" + EnvServer)

// readyWithin bounds how long a server may take to accept connections.
const readyWithin = 60 * time.Second

// Bin returns the directory of the newest PostgreSQL's initdb and postgres.
func Bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && isExec(filepath.Join(filepath.Dir(p), "postgres")) {
		return filepath.Dir(p), nil
	}
	return "", ErrNoPostgres
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// A Cluster is an initdb'd data directory that servers are copied from.
type Cluster struct {
	bin      string
	base     string // owned by the server's user
	template string
	cred     *syscall.Credential // nil: run as ourselves
	uid, gid int
}

// Init makes a cluster under a new directory of dir (os.TempDir() if
// ""). Remove it with Close.
func Init(dir string) (*Cluster, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, uid: os.Getuid(), gid: os.Getgid()}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root: run them as an
		// unprivileged user.
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, and neither user postgres nor nobody exists to run the server as: %w", err)
		}
		c.uid, _ = strconv.Atoi(u.Uid)
		c.gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}
	}
	c.base, err = os.MkdirTemp(dir, "lockwatch-pg-")
	if err != nil {
		return nil, err
	}
	// The server's user must reach its directories.
	if err := os.Chmod(c.base, 0o755); err != nil {
		c.Close()
		return nil, err
	}
	if err := os.Chown(c.base, c.uid, c.gid); err != nil {
		c.Close()
		return nil, err
	}
	c.template = filepath.Join(c.base, "template")
	out, err := c.command(filepath.Join(bin, "initdb"), "-D", c.template, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, bytes.TrimSpace(out))
	}
	return c, nil
}

// command runs as the server's user, with a clean locale.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.base
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

// Close removes the cluster's directory (stop its servers first).
func (c *Cluster) Close() error { return os.RemoveAll(c.base) }

// Options configure a server. The zero value is a server on 127.0.0.1.
type Options struct {
	// Listen are addresses to listen on besides 127.0.0.1 (an address in
	// a network namespace's link the test made).
	Listen []string
	// Settings are extra server settings, name=value.
	Settings []string
	// Trust are client addresses (CIDR) the server lets in without a
	// password, besides its own loopback and unix socket.
	Trust []string
}

// A Server is a running private PostgreSQL server.
type Server struct {
	Dir    string // data directory (also its unix socket's)
	Port   int
	Listen []string // listen addresses, 127.0.0.1 first
	Log    string   // its log file
	cmd    *exec.Cmd
	done   chan error
}

// Start copies the cluster and starts a server on it, on a free loopback
// port and a unix socket in its directory, and waits until it accepts
// connections.
func (c *Cluster) Start(opts Options) (*Server, error) {
	dir, err := os.MkdirTemp(c.base, "srv-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, c.uid, c.gid); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := c.command("cp", "-a", c.template, data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: copy cluster: %v: %s", err, out)
	}
	if len(opts.Trust) > 0 {
		f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		for _, a := range opts.Trust {
			fmt.Fprintf(f, "host all all %s trust\n", a)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Port: port, Listen: append([]string{"127.0.0.1"}, opts.Listen...), Log: filepath.Join(dir, "log"), done: make(chan error, 1)}
	logf, err := os.Create(s.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"-D", data, "-k", dir, "-p", strconv.Itoa(port), "-h", strings.Join(s.Listen, ","),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=1100", "-c", "shared_buffers=32MB", "-c", "max_locks_per_transaction=128"}
	for _, kv := range opts.Settings {
		args = append(args, "-c", kv)
	}
	s.cmd = c.command(filepath.Join(c.bin, "postgres"), args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if s.cmd.SysProcAttr == nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	s.cmd.SysProcAttr.Setpgid = true
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := s.await(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// await waits until the server's socket accepts connections, or it exits.
func (s *Server) await() error {
	deadline := time.Now().Add(readyWithin)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Accepting on the socket is not enough: a server starting up
		// refuses sessions (57P03) until recovery is done.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgconn.Connect(ctx, s.URL())
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			log, _ := os.ReadFile(s.Log)
			return fmt.Errorf("pgtest: postgres exited (%v): %s", err, bytes.TrimSpace(log))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres did not accept connections within %s (log: %s)", readyWithin, s.Log)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is a connection string to the server's loopback port as the
// superuser postgres.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
}

// SocketURL is a connection string through the server's unix socket.
func (s *Server) SocketURL() string {
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", s.Dir, s.Port)
}

// Stop stops the server (a fast shutdown: SIGINT) and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(readyWithin):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return nil
}

// Given returns $LOCKWATCH_TEST_POSTGRES, the server a test was given.
func Given() string { return os.Getenv(EnvServer) }

// ForTests returns the server a package's tests use: the one
// $LOCKWATCH_TEST_POSTGRES names (srv and cluster nil), or a private one
// started here (stop it with stop). err wraps ErrNoPostgres when there is
// neither: the tests are then skipped, with a note.
func ForTests() (url string, srv *Server, cluster *Cluster, stop func(), err error) {
	if url := Given(); url != "" {
		return url, nil, nil, func() {}, nil
	}
	cluster, err = Init("")
	if err != nil {
		return "", nil, nil, func() {}, err
	}
	srv, err = cluster.Start(Options{})
	if err != nil {
		cluster.Close()
		return "", nil, nil, func() {}, err
	}
	return srv.URL(), srv, cluster, func() { srv.Stop(); cluster.Close() }, nil
}
