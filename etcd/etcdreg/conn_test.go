package etcdreg

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestConnFromEnv: the environment run gives a program is read back as
// the Conn it was made from, NAME:PASSWORD in the user included.
func TestConnFromEnv(t *testing.T) {
	want := Conn{Endpoints: []string{"https://a:1", "https://b:2"}, User: "u", Password: "p:w", CACert: "ca.pem", Cert: "c.pem", Key: "k.pem"}
	for _, kv := range want.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	got := ConnFromEnv()
	if !slices.Equal(got.Endpoints, want.Endpoints) || got.User != want.User || got.Password != want.Password ||
		got.CACert != want.CACert || got.Cert != want.Cert || got.Key != want.Key {
		t.Errorf("ConnFromEnv() = %+v; want %+v", got, want)
	}
	t.Setenv(EnvUser, "root:pw")
	t.Setenv(EnvPassword, "")
	if got := ConnFromEnv(); got.User != "root" || got.Password != "pw" {
		t.Errorf("$%s=root:pw: user %q, password %q; want root, pw", EnvUser, got.User, got.Password)
	}
}

// TestConnConfig: each wrong setting is refused, before any connection,
// with what to do.
func TestConnConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	https := []string{"https://127.0.0.1:1"}
	for _, tt := range []struct {
		c    Conn
		want string
	}{
		{Conn{}, "no etcd endpoints"},
		{Conn{Endpoints: []string{"127.0.0.1:2379"}}, "want http://HOST:PORT or https://HOST:PORT"},
		{Conn{Endpoints: https, Password: "p"}, "a password but no user"},
		{Conn{Endpoints: https, User: "u"}, `user "u" has no password`},
		{Conn{Endpoints: []string{"http://h:1"}, CACert: "ca.pem"}, "is plain http but TLS files are given"},
		{Conn{Endpoints: https, CACert: filepath.Join(dir, "none.pem")}, "CA certificate: open"},
		{Conn{Endpoints: https, CACert: notPEM}, "holds no PEM certificate"},
		{Conn{Endpoints: https, Cert: "c.pem"}, "give --cert and --key together"},
		{Conn{Endpoints: https, Cert: notPEM, Key: notPEM}, "client certificate: tls:"},
	} {
		_, err := tt.c.Config()
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v; want one line saying %q", tt.c, err, tt.want)
		}
	}
}

// TestDialNothingThere: an endpoint where nothing listens is
// ErrUnreachable, with the connection's own error.
func TestDialNothingThere(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Dial(context.Background(), Conn{Endpoints: []string{"http://" + addr}})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Dial(%s, nothing listening): %v; want ErrUnreachable, connection refused", addr, err)
	}
}
