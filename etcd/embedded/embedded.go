// Package embedded runs a single-member etcd server inside the process, on
// loopback ports, with its data in a directory: what the tests and the
// demo use when no cluster is given. It compacts etcd's history once an
// hour, keeping the last hour.
//
//	srv, err := embedded.Start(dir)
//	...
//	defer srv.Stop()
//	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints()})
package embedded

import (
	"errors"
	"fmt"
	"golang.org/x/crypto/bcrypt"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// A Server is a running (or stopped) embedded etcd server. It is not safe
// for concurrent use.
type Server struct {
	host       string // the address it listens on: 127.0.0.1 unless StartOn
	dir        string
	clientPort int
	peerPort   int
	e          *embed.Etcd

	certFile, keyFile string // serve clients https with these, when set
	clientCAFile      string // and require client certificates this CA signed, when set
}

// Start starts a server keeping its data in dir (created if needed) on two
// free loopback ports, and waits until it serves.
func Start(dir string) (*Server, error) { return StartTLS(dir, "", "", "") }

// StartOn is Start, listening on the address host (an IPv4 address of
// this machine) instead of 127.0.0.1: for clients in other network
// namespaces.
func StartOn(dir, host string) (*Server, error) {
	cp, err := freePort(host)
	if err != nil {
		return nil, err
	}
	pp, err := freePort(host)
	if err != nil {
		return nil, err
	}
	return start(&Server{host: host, dir: dir, clientPort: cp, peerPort: pp})
}

// StartTLS is Start, serving clients https with the server certificate
// certFile and its key keyFile (PEM files; the certificate must name
// 127.0.0.1), or plain http when both are "". With clientCAFile, clients
// must present a certificate that this CA signed.
func StartTLS(dir, certFile, keyFile, clientCAFile string) (*Server, error) {
	cp, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	pp, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	return start(&Server{host: "127.0.0.1", dir: dir, clientPort: cp, peerPort: pp, certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile})
}

func start(s *Server) (*Server, error) {
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("embedded etcd: no free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Endpoints returns the client URL, for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string {
	return []string{fmt.Sprintf("%s://%s:%d", s.scheme(), s.host, s.clientPort)}
}

func (s *Server) scheme() string {
	if s.certFile != "" {
		return "https"
	}
	return "http"
}

// Dir returns the data directory.
func (s *Server) Dir() string { return s.dir }

// Restart starts a stopped server again on the same ports and data: what
// it had written before Stop is kept.
func (s *Server) Restart() error {
	if s.e != nil {
		return errors.New("embedded etcd: already running")
	}
	cfg := embed.NewConfig()
	cfg.Name = "lockwatch"
	cfg.Dir = s.dir
	cfg.LogLevel = "fatal" // the shutdown of a healthy server logs errors
	// Passwords here are test fixtures: bcrypt's lowest cost, not its
	// default (10), whose hashing under the race detector on a loaded
	// machine outlasted the client's 5 s authentication deadline.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	// Keep an hour of history, as a cluster for lockwatch should (see
	// docs/distributed.md, "Compaction"): every range read walks the
	// deleted key names etcd keeps until it compacts (a long run's ended
	// lifetimes), while an attach of a foreign lock reads its holder's
	// "held since" from the history.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1h"
	cu := url.URL{Scheme: s.scheme(), Host: net.JoinHostPort(s.host, strconv.Itoa(s.clientPort))}
	pu := url.URL{Scheme: "http", Host: net.JoinHostPort(s.host, strconv.Itoa(s.peerPort))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = s.certFile, s.keyFile
	if s.clientCAFile != "" {
		cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = s.clientCAFile, true
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("embedded etcd in %s: %w", s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd in %s: %w", s.dir, err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return fmt.Errorf("embedded etcd in %s: not ready after 60s", s.dir)
	}
	s.e = e
	return nil
}

// Stop stops the server; Restart starts it again.
func (s *Server) Stop() {
	if s.e == nil {
		return
	}
	s.e.Close()
	s.e = nil
}
