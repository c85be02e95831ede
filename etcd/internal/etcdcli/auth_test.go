package etcdcli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

const rootPassword = "s3cret-root"

// writePEM writes one PEM block into dir/name and returns its path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pki is a CA made by a test, and what it signed, as PEM files.
type pki struct {
	ca                    string // the CA's certificate
	serverCert, serverKey string // for 127.0.0.1
	clientCert, clientKey string // for a client
}

// newCA makes a self-signed CA in dir, a server certificate it signs for
// 127.0.0.1 and a client certificate.
func newCA(t *testing.T, dir, name string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(serial int64, who string, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: who},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+"-"+who+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-"+who+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p := pki{ca: writePEM(t, dir, name+"-ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = sign(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = sign(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// pool returns p's CA as a pool.
func (p pki) pool(t *testing.T) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// authRun starts an embedded etcd (https with certFile and keyFile, when
// given, requiring client certificates of clientCA when given), enables its auth through the client API with a root user and a
// user "nobody" whose role grants nothing, and opens a run "authrun" in
// it as root (one process, one lock held, with no waiter: nothing to
// find). It returns the server's endpoints.
func authRun(t *testing.T, tc *clientv3.Config, certFile, keyFile, clientCA string) []string {
	t.Helper()
	srv, err := embedded.StartTLS(t.TempDir(), certFile, keyFile, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := *tc
	cfg.Endpoints, cfg.DialTimeout = srv.Endpoints(), 5*time.Second
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, "root", rootPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	// A user whose role may read and write nothing.
	if _, err := cli.UserAdd(ctx, "nobody", rootPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.RoleAdd(ctx, "none"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "nobody", "none"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Username, cfg.Password = "root", rootPassword
	root, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	reg, err := etcdreg.Open(ctx, root, "authrun", etcdreg.Options{Role: "main"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	m, err := reg.Mutex("queue")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unlock(context.Background()) })
	return srv.Endpoints()
}

type attachCase struct {
	name    string
	env     []string // KEY=VALUE
	args    []string // before the URL
	target  string   // instead of the URL
	wantErr string   // "": the report, exit 0; else exit 2 and one line saying this
}

// runAttach runs lockwatch-etcd attach (this test binary, linked under
// that name: a process of its own, its real stderr) with each case's flags
// and environment on url, and checks its exit status and output.
func runAttach(t *testing.T, url string, cases []attachCase) {
	t.Helper()
	tool := filepath.Join(t.TempDir(), "lockwatch-etcd")
	selfAs(t, tool)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") && !strings.HasPrefix(kv, "LOCKWATCH_ETCD") {
			env = append(env, kv)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := url
			if tc.target != "" {
				target = tc.target
			}
			args := append(append([]string{"attach", "-o", "json"}, tc.args...), target)
			cmd := exec.Command(tool, args...)
			cmd.Env = append(env[:len(env):len(env)], tc.env...)
			var out, errw bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errw
			err := cmd.Run()
			if tc.wantErr == "" {
				var r struct {
					Run      string `json:"run"`
					Findings []any  `json:"findings"`
				}
				if err != nil || json.Unmarshal(out.Bytes(), &r) != nil || !strings.Contains(r.Run, "authrun") || len(r.Findings) != 0 || errw.Len() != 0 {
					t.Fatalf("attach %q: %v; want the report of authrun, nothing found, nothing on stderr\nstdout: %s\nstderr: %s", args, err, out.String(), errw.String())
				}
				return
			}
			var xe *exec.ExitError
			if !errors.As(err, &xe) || xe.ExitCode() != 2 {
				t.Fatalf("attach %q: %v; want exit status 2\nstdout: %s\nstderr: %s", args, err, out.String(), errw.String())
			}
			if msg := errw.String(); !strings.Contains(msg, tc.wantErr) || strings.Count(msg, "\n") != 1 || out.Len() != 0 {
				t.Errorf("attach %q: stderr %q, stdout %q; want one line on stderr saying %q", args, msg, out.String(), tc.wantErr)
			}
		})
	}
}

// TestAttachAuth: against an etcd whose auth is enabled, attach with the
// right user and password (from a file, or $ETCDCTL_USER=NAME:PASSWORD, or
// $ETCDCTL_PASSWORD) gives the report; without a user, with a wrong
// password, or with a missing password file, one line says what was wrong
// and what to do, and the exit status is 2.
func TestAttachAuth(t *testing.T) {
	eps := authRun(t, &clientv3.Config{}, "", "", "")
	url := "etcd://" + strings.TrimPrefix(eps[0], "http://") + "/authrun"
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte(rootPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not-it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runAttach(t, url, []attachCase{
		{name: "password file", args: []string{"--user", "root", "--password-file", good}},
		{name: "ETCDCTL_USER name:password", env: []string{"ETCDCTL_USER=root:" + rootPassword}},
		{name: "ETCDCTL_PASSWORD", env: []string{"ETCDCTL_PASSWORD=" + rootPassword}, args: []string{"--user", "root"}},
		{name: "RUN with --etcd", args: []string{"--user", "root", "--password-file", good, "--etcd", eps[0]}, target: "authrun"},
		{name: "no user", wantErr: "etcd's auth is enabled and no user was given: give --user NAME"},
		{name: "wrong password", args: []string{"--user", "root", "--password-file", bad}, wantErr: "etcd refused the user name or password (authentication failed)"},
		{name: "no permission", env: []string{"ETCDCTL_USER=nobody:" + rootPassword}, wantErr: "etcd denied the user access (permission denied): grant its role read and write on the prefix /lockwatch/"},
		{name: "user without password", args: []string{"--user", "root"}, wantErr: `user "root" has no password: give it in a file`},
		{name: "missing password file", args: []string{"--user", "root", "--password-file", filepath.Join(dir, "none")}, wantErr: "--password-file: open"},
	})
}

// TestAttachTLS: against an etcd serving https with a certificate of a CA
// made here (and its auth enabled), attach with that CA and the password
// gives the report; with another CA's certificate, or plain http, one line
// names the TLS failure and what to give, and the exit status is 2.
func TestAttachTLS(t *testing.T) {
	dir := t.TempDir()
	p := newCA(t, dir, "etcd")
	ca, otherCA := p.ca, newCA(t, dir, "other").ca
	eps := authRun(t, &clientv3.Config{TLS: tlsConfig(p.pool(t))}, p.serverCert, p.serverKey, "")
	hostPort := strings.TrimPrefix(eps[0], "https://")
	url := "etcd://" + hostPort + "/authrun"
	user := "ETCDCTL_USER=root:" + rootPassword
	runAttach(t, url, []attachCase{
		{name: "the CA", env: []string{user}, args: []string{"--cacert", ca}},
		{name: "ETCDCTL_CACERT, https --etcd", env: []string{user, "ETCDCTL_CACERT=" + ca}, args: []string{"--etcd", eps[0]}, target: "authrun"},
		{name: "another CA", env: []string{user}, args: []string{"--cacert", otherCA}, wantErr: "TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority: check --cacert"},
		{name: "plain http", env: []string{user}, wantErr: "serves TLS: give --cacert FILE, the CA that signed etcd's certificate (an etcd:// URL's endpoints are then https; write others https://" + hostPort + ")"},
		{name: "no password", args: []string{"--cacert", ca}, wantErr: "etcd's auth is enabled and no user was given"},
		{name: "missing CA file", env: []string{user}, args: []string{"--cacert", filepath.Join(dir, "none.pem")}, wantErr: "CA certificate: open"},
		{name: "http endpoint with TLS files", env: []string{user}, args: []string{"--cacert", ca, "--etcd", "http://" + hostPort}, target: "authrun", wantErr: "is plain http but TLS files are given: write it https://"},
	})
}

func tlsConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// With envOpen set, the test binary is a program of a run: it dials the
// etcd its environment names (etcdreg.ConnFromEnv), opens the run, takes
// and releases a lock, and exits 0; else it says why and exits 1.
const envOpen = "ETCDCLI_TEST_OPEN"

func openFromEnv() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := func() error {
		cli, err := etcdreg.Dial(ctx, etcdreg.ConnFromEnv())
		if err != nil {
			return err
		}
		defer cli.Close()
		reg, err := etcdreg.Open(ctx, cli, os.Getenv(etcdcli.EnvRun), etcdreg.Options{Role: "program"})
		if err != nil {
			return err
		}
		defer reg.Close()
		m, err := reg.Mutex("queue")
		if err != nil {
			return err
		}
		if err := m.Lock(ctx); err != nil {
			return err
		}
		return m.Unlock(ctx)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "program:", err)
		return 1
	}
	return 0
}

// TestRunPassesCredentials: lockwatch-etcd run on an https etcd with auth
// gives the program the user, the password and the CA in its environment
// (not on its command line), so that etcdreg.ConnFromEnv reaches the
// cluster: the program takes a lock and exits 0. Without them it cannot,
// and its one line says why.
func TestRunPassesCredentials(t *testing.T) {
	dir := t.TempDir()
	p := newCA(t, dir, "etcd")
	ca := p.ca
	eps := authRun(t, &clientv3.Config{TLS: tlsConfig(p.pool(t))}, p.serverCert, p.serverKey, "")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(rootPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_CACERT", etcdreg.EnvUser, etcdreg.EnvPassword, etcdreg.EnvCACert} {
		t.Setenv(k, "")
	}
	t.Setenv(envOpen, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errw bytes.Buffer
	err := etcdcli.Main(ctx, []string{"run", "--etcd", eps[0], "--user", "root", "--password-file", pw, "--cacert", ca, "--", os.Args[0]}, &out, &errw)
	if err != nil {
		t.Fatalf("run with the credentials: %v; want the program's exit status 0\nstderr: %s", err, errw.String())
	}

	// The run itself without the user: lockwatch-etcd says so and exits 125.
	errw.Reset()
	err = etcdcli.Main(ctx, []string{"run", "--etcd", eps[0], "--cacert", ca, "--", os.Args[0]}, &out, &errw)
	var ee *etcdcli.ExitError
	if !errors.As(err, &ee) || ee.Code != 125 || !strings.Contains(errw.String(), "no user was given") {
		t.Errorf("run without a user: %v\nstderr: %s; want exit status 125 and why", err, errw.String())
	}
}

// TestLockwatchAttachAuth: lockwatch itself (the main module's binary)
// passes --user and --password-file to lockwatch-etcd beside it: with the
// right password the report, exit 0; with a wrong one, one line saying so,
// exit 2.
func TestLockwatchAttachAuth(t *testing.T) {
	dir := lockwatchBeside(t)
	eps := authRun(t, &clientv3.Config{}, "", "", "")
	url := "etcd://" + strings.TrimPrefix(eps[0], "http://") + "/authrun"
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte(rootPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not-it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") && !strings.HasPrefix(kv, "LOCKWATCH_ETCD") {
			env = append(env, kv)
		}
	}
	for _, tc := range []struct {
		pw       string
		wantCode int
		want     string
	}{{good, 0, `"run": "` + url + `"`}, {bad, 2, "authentication failed"}} {
		cmd := exec.Command(filepath.Join(dir, "lockwatch"), "attach", "-o", "json", "--user", "root", "--password-file", tc.pw, url)
		cmd.Env = env
		var out, errw bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errw
		code := exitCode(t, cmd.Run())
		if code != tc.wantCode || !strings.Contains(out.String()+errw.String(), tc.want) {
			t.Errorf("lockwatch attach --password-file %s: exit status %d; want %d and %q\nstdout: %s\nstderr: %s", filepath.Base(tc.pw), code, tc.wantCode, tc.want, out.String(), errw.String())
		}
	}
}

// TestAttachClientCert: against an etcd that requires client certificates
// of its CA (and its auth enabled), attach with --cert and --key gives the
// report; without them, one line says to check them, exit 2.
func TestAttachClientCert(t *testing.T) {
	p := newCA(t, t.TempDir(), "etcd")
	pair, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsConfig(p.pool(t))
	tc.Certificates = []tls.Certificate{pair}
	eps := authRun(t, &clientv3.Config{TLS: tc}, p.serverCert, p.serverKey, p.ca)
	url := "etcd://" + strings.TrimPrefix(eps[0], "https://") + "/authrun"
	user := "ETCDCTL_USER=root:" + rootPassword
	runAttach(t, url, []attachCase{
		{name: "client certificate", env: []string{user}, args: []string{"--cacert", p.ca, "--cert", p.clientCert, "--key", p.clientKey}},
		{name: "ETCDCTL_CERT and ETCDCTL_KEY", env: []string{user, "ETCDCTL_CACERT=" + p.ca, "ETCDCTL_CERT=" + p.clientCert, "ETCDCTL_KEY=" + p.clientKey}},
		{name: "no client certificate", env: []string{user}, args: []string{"--cacert", p.ca}, wantErr: "the TLS handshake succeeds but etcd does not answer: if it requires client certificates, give --cert and --key"},
		{name: "certificate without key", env: []string{user}, args: []string{"--cacert", p.ca, "--cert", p.clientCert}, wantErr: "give --cert and --key together"},
	})
}
