package etcdreg

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The environment that names a program's etcd, as `lockwatch run --etcd`
// gives it (docs/distributed.md, "Auth and TLS"). ConnFromEnv reads it.
const (
	EnvEndpoints = "LOCKWATCH_ETCD"          // comma-separated client URLs
	EnvUser      = "LOCKWATCH_ETCD_USER"     // NAME, or NAME:PASSWORD
	EnvPassword  = "LOCKWATCH_ETCD_PASSWORD" // the password of EnvUser's NAME
	EnvCACert    = "LOCKWATCH_ETCD_CACERT"   // PEM file of the CA that signed the server's certificate
	EnvCert      = "LOCKWATCH_ETCD_CERT"     // PEM file of the client's certificate
	EnvKey       = "LOCKWATCH_ETCD_KEY"      // PEM file of the client's key
)

// DialTimeout bounds Dial: connecting, the TLS handshake and
// authenticating.
const DialTimeout = 5 * time.Second

// Conn is how to reach an etcd cluster: its endpoints, a user and a
// password when its auth is enabled, and TLS files when it serves https.
type Conn struct {
	Endpoints []string // client URLs: http://HOST:PORT or https://HOST:PORT
	User      string
	Password  string
	CACert    string // PEM file; "" trusts the system's CAs
	Cert, Key string // PEM files of a client certificate, both or neither
}

// ConnFromEnv returns the Conn that the environment names:
// $LOCKWATCH_ETCD, $LOCKWATCH_ETCD_USER (NAME or NAME:PASSWORD, as
// etcdctl's --user), $LOCKWATCH_ETCD_PASSWORD, $LOCKWATCH_ETCD_CACERT,
// $LOCKWATCH_ETCD_CERT and $LOCKWATCH_ETCD_KEY.
func ConnFromEnv() Conn {
	c := Conn{
		User:     os.Getenv(EnvUser),
		Password: os.Getenv(EnvPassword),
		CACert:   os.Getenv(EnvCACert),
		Cert:     os.Getenv(EnvCert),
		Key:      os.Getenv(EnvKey),
	}
	if eps := os.Getenv(EnvEndpoints); eps != "" {
		c.Endpoints = strings.Split(eps, ",")
	}
	if name, pw, ok := strings.Cut(c.User, ":"); ok {
		c.User, c.Password = name, pw
	}
	return c
}

// Env returns c as the environment ConnFromEnv reads, for a child process.
func (c Conn) Env() []string {
	env := []string{EnvEndpoints + "=" + strings.Join(c.Endpoints, ",")}
	for _, kv := range [][2]string{{EnvUser, c.User}, {EnvPassword, c.Password}, {EnvCACert, c.CACert}, {EnvCert, c.Cert}, {EnvKey, c.Key}} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	return env
}

// TLS reports whether c has TLS files.
func (c Conn) TLS() bool { return c.CACert != "" || c.Cert != "" || c.Key != "" }

// Config returns the client configuration of c, or an error that says
// which setting is wrong and how to give it.
func (c Conn) Config() (clientv3.Config, error) {
	// The client's own log would print its retries as JSON on stderr:
	// Dial's errors say what failed.
	cfg := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: DialTimeout, Username: c.User, Password: c.Password, Logger: zap.NewNop()}
	if len(c.Endpoints) == 0 {
		return cfg, fmt.Errorf("etcdreg: no etcd endpoints: give http://HOST:2379 (or https://), as $%s for a program", EnvEndpoints)
	}
	if c.User == "" && c.Password != "" {
		return cfg, errors.New("etcdreg: a password but no user: give the user's name too (lockwatch-etcd --user NAME, a program $" + EnvUser + ")")
	}
	if c.User != "" && c.Password == "" {
		return cfg, fmt.Errorf("etcdreg: user %q has no password: give it in a file (lockwatch-etcd --password-file FILE), or as $ETCDCTL_PASSWORD (a program: $%s)", c.User, EnvPassword)
	}
	https := false
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("etcdreg: endpoint %q: want http://HOST:PORT or https://HOST:PORT", ep)
		}
		if c.TLS() && u.Scheme == "http" {
			return cfg, fmt.Errorf("etcdreg: endpoint %q is plain http but TLS files are given: write it https://", ep)
		}
		https = https || u.Scheme == "https"
	}
	if !https {
		return cfg, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return cfg, fmt.Errorf("etcdreg: CA certificate: %w: give the PEM file of the CA that signed etcd's certificate (--cacert)", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("etcdreg: CA certificate %s holds no PEM certificate: give the CA's certificate file (--cacert)", c.CACert)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return cfg, errors.New("etcdreg: a client certificate needs both its certificate and its key file: give --cert and --key together")
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return cfg, fmt.Errorf("etcdreg: client certificate: %w: give the PEM files of the certificate (--cert) and its key (--key)", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	cfg.TLS = tc
	return cfg, nil
}

// Dial connects to the cluster c names, authenticates, and checks that
// one endpoint answers (etcd's status, which asks for a user when its auth
// is enabled), each step bounded by DialTimeout. Its errors say in one
// line what was wrong (no endpoint answers, a TLS failure, no user or a
// wrong password) and what to do.
func Dial(ctx context.Context, c Conn) (*clientv3.Client, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg) // authenticates, within DialTimeout
	if err != nil {
		return nil, explainDial(c, cfg, err)
	}
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	for _, ep := range c.Endpoints {
		if _, err = cli.Status(ctx, ep); err == nil || isAuth(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		cli.Close()
		return nil, explainDial(c, cfg, err)
	}
	return cli, nil
}

func isAuth(err error) bool {
	for _, e := range []error{rpctypes.ErrUserEmpty, rpctypes.ErrPermissionDenied, rpctypes.ErrAuthFailed, rpctypes.ErrInvalidAuthToken, rpctypes.ErrAuthOldRevision} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// explainAuth says what an authentication or permission error of etcd
// means and what to do, or returns "".
func explainAuth(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return "etcd refused the user name or password (authentication failed): check --user and the password (--password-file, $ETCDCTL_PASSWORD; a program: $" + EnvUser + ", $" + EnvPassword + ")"
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return "etcd's auth is enabled and no user was given: give --user NAME and --password-file FILE (or $ETCDCTL_USER=NAME:PASSWORD; a program: $" + EnvUser + ", $" + EnvPassword + ")"
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return "etcd denied the user access (permission denied): grant its role read and write on the prefix /lockwatch/ (etcdctl role grant-permission ROLE --prefix readwrite /lockwatch/)"
	case errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrAuthOldRevision):
		return "etcd refused the client's auth token: run again (a token is renewed when the password or the roles change)"
	}
	return ""
}

// explainDial turns a failed dial into one line: what failed, what to do.
func explainDial(c Conn, cfg clientv3.Config, err error) error {
	eps := strings.Join(c.Endpoints, ",")
	if msg := explainAuth(err); msg != "" {
		return fmt.Errorf("etcdreg: %s: %s", eps, msg)
	}
	// The client says only that it could not connect in time: try the
	// first endpoint ourselves, to say why.
	u, _ := url.Parse(c.Endpoints[0])
	conn, derr := net.DialTimeout("tcp", u.Host, time.Second)
	if derr != nil {
		return fmt.Errorf("etcdreg: %s: %w (%v): check that the cluster runs and that the endpoints are right", eps, ErrUnreachable, derr)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if u.Scheme == "https" {
		tc := cfg.TLS.Clone()
		tc.ServerName = u.Hostname()
		tc.NextProtos = []string{"h2"}
		if herr := tls.Client(conn, tc).Handshake(); herr != nil {
			return fmt.Errorf("etcdreg: %s: TLS handshake failed: %v: check --cacert (the CA that signed etcd's certificate), --cert and --key, and that the endpoint serves https", u.Host, herr)
		}
		if c.Cert == "" {
			return fmt.Errorf("etcdreg: %s: %w (%v): the TLS handshake succeeds but etcd does not answer: if it requires client certificates, give --cert and --key (one its CA signed)", eps, ErrUnreachable, err)
		}
		return fmt.Errorf("etcdreg: %s: %w (%v): the TLS handshake succeeds but etcd does not answer: check that it accepts the client certificate --cert (signed by a CA it trusts)", eps, ErrUnreachable, err)
	}
	// Plain http: does the server want TLS?
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec // only asks whether the server speaks TLS; nothing is sent
	if tls.Client(conn, tc).Handshake() == nil {
		return fmt.Errorf("etcdreg: %s serves TLS: give --cacert FILE, the CA that signed etcd's certificate (an etcd:// URL's endpoints are then https; write others https://%s)", u.Host, u.Host)
	}
	return fmt.Errorf("etcdreg: %s: %w (%v): check that the cluster runs and that the endpoints are right", eps, ErrUnreachable, err)
}
