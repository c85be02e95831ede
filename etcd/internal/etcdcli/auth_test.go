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
	"math/big"
	"net"
	"os"
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

// newCA makes a self-signed CA and a server certificate it signs for
// 127.0.0.1, in dir: the CA's certificate file, the server's certificate
// and key files.
func newCA(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+"-ca.pem", "CERTIFICATE", caDER),
		writePEM(t, dir, name+"-server.pem", "CERTIFICATE", der),
		writePEM(t, dir, name+"-server-key.pem", "EC PRIVATE KEY", keyDER)
}

// authRun starts an embedded etcd (https with certFile and keyFile, when
// given), enables its auth with a root user through the client API, and
// opens a run "authrun" in it as root (one process, one lock held, with
// no waiter: nothing to find). It returns the server's endpoints.
func authRun(t *testing.T, tc *clientv3.Config, certFile, keyFile string) []string {
	t.Helper()
	srv, err := embedded.StartTLS(t.TempDir(), certFile, keyFile)
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

// runAttach runs lockwatch-etcd attach with each case's flags and
// environment on url, and checks its exit status and output.
func runAttach(t *testing.T, url string, cases []attachCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"} {
				t.Setenv(k, "")
			}
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errw bytes.Buffer
			target := url
			if tc.target != "" {
				target = tc.target
			}
			args := append(append([]string{"attach", "-o", "json"}, tc.args...), target)
			start := time.Now()
			err := etcdcli.Main(ctx, args, &out, &errw)
			if tc.wantErr == "" {
				var r struct {
					Run      string `json:"run"`
					Findings []any  `json:"findings"`
				}
				if err != nil || json.Unmarshal(out.Bytes(), &r) != nil || !strings.Contains(r.Run, "authrun") || len(r.Findings) != 0 {
					t.Fatalf("attach %q: %v; want the report of authrun, nothing found\nstdout: %s\nstderr: %s", args, err, out.String(), errw.String())
				}
				return
			}
			var ee *etcdcli.ExitError
			if !errors.As(err, &ee) || ee.Code != 2 {
				t.Fatalf("attach %q: %v; want exit status 2\nstdout: %s\nstderr: %s", args, err, out.String(), errw.String())
			}
			if msg := errw.String(); !strings.Contains(msg, tc.wantErr) || strings.Count(msg, "\n") != 1 || out.Len() != 0 {
				t.Errorf("attach %q: stderr %q, stdout %q; want one line on stderr saying %q", args, msg, out.String(), tc.wantErr)
			}
			// Bounded by the dial timeout (plus the embedded server's own
			// answer): never a hang.
			if d := time.Since(start); d > 3*etcdreg.DialTimeout {
				t.Errorf("attach %q took %v; want its failure within the dial timeout", args, d)
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
	eps := authRun(t, &clientv3.Config{}, "", "")
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
	ca, cert, key := newCA(t, dir, "etcd")
	otherCA, _, _ := newCA(t, dir, "other")
	pool := x509.NewCertPool()
	b, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(b)
	eps := authRun(t, &clientv3.Config{TLS: tlsConfig(pool)}, cert, key)
	hostPort := strings.TrimPrefix(eps[0], "https://")
	url := "etcd://" + hostPort + "/authrun"
	user := "ETCDCTL_USER=root:" + rootPassword
	runAttach(t, url, []attachCase{
		{name: "the CA", env: []string{user}, args: []string{"--cacert", ca}},
		{name: "ETCDCTL_CACERT, https --etcd", env: []string{user, "ETCDCTL_CACERT=" + ca}, args: []string{"--etcd", eps[0]}, target: "authrun"},
		{name: "another CA", env: []string{user}, args: []string{"--cacert", otherCA}, wantErr: "TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority: check --cacert"},
		{name: "plain http", env: []string{user}, wantErr: "serves TLS: write the endpoint https://" + hostPort + " and give --cacert"},
		{name: "no password", args: []string{"--cacert", ca}, wantErr: "etcd's auth is enabled and no user was given"},
		{name: "missing CA file", env: []string{user}, args: []string{"--cacert", filepath.Join(dir, "none.pem")}, wantErr: "CA certificate: open"},
		{name: "http endpoint with TLS files", env: []string{user}, args: []string{"--cacert", ca, "--etcd", "http://" + hostPort}, target: "authrun", wantErr: "is plain http but TLS files are given: write it https://"},
	})
}

func tlsConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
