// Package tlsconf loads gridd's TLS material (a certificate, its key and a
// CA bundle) and keeps it fresh: the *tls.Config values it hands out read
// the current material on every handshake, so replacing the files and
// calling Reload (on SIGHUP, or from Watch) takes effect for new
// connections without a restart. Established connections keep the
// certificate they were made with.
//
// One Source serves every role a node plays: the gRPC server, the gRPC
// client that forwards to the leader or joins, and both ends of the Raft
// transport. Peers verify each other against the same CA.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// ClientAuth is how a TLS listener treats client certificates.
type ClientAuth string

const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest verifies a client certificate if one is sent.
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire refuses clients without a certificate signed by the
	// CA (mTLS).
	ClientAuthRequire ClientAuth = "require"
)

// ParseClientAuth reads none, request or require.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch ClientAuth(strings.ToLower(strings.TrimSpace(s))) {
	case ClientAuthNone, "":
		return ClientAuthNone, nil
	case ClientAuthRequest:
		return ClientAuthRequest, nil
	case ClientAuthRequire:
		return ClientAuthRequire, nil
	}
	return "", fmt.Errorf("client auth %q: want none, request or require", s)
}

// Files names the PEM files of a Source.
type Files struct {
	Cert string // certificate chain, leaf first
	Key  string // private key of Cert
	CA   string // CA bundle that peers and clients are verified against; optional for a server without client auth
}

// material is one consistent load of Files.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil: the system roots
	stat string         // file sizes and times at load, for Watch
}

// Source hands out TLS configurations backed by files it can reload.
type Source struct {
	files Files
	auth  ClientAuth
	cur   atomic.Pointer[material]
}

// Load reads files once; it fails if the key does not match the
// certificate, a file is missing, or the CA bundle holds no certificate.
// auth applies to the configurations ServerConfig returns; require and
// request need a CA.
func Load(files Files, auth ClientAuth) (*Source, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: both a certificate and a key file are needed")
	}
	if auth == "" {
		auth = ClientAuthNone
	}
	if auth != ClientAuthNone && files.CA == "" {
		return nil, fmt.Errorf("tls: client auth %q needs a CA file to verify client certificates against", auth)
	}
	s := &Source{files: files, auth: auth}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the files. On error the previous material stays in use,
// so a half-written file never takes a node off the network.
func (s *Source) Reload() error {
	m, err := load(s.files)
	if err != nil {
		return err
	}
	s.cur.Store(m)
	return nil
}

func load(f Files) (*material, error) {
	stat := statFiles(f)
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	m := &material{cert: &cert, stat: stat}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", f.CA)
		}
	}
	return m, nil
}

func statFiles(f Files) string {
	var b strings.Builder
	for _, p := range []string{f.Cert, f.Key, f.CA} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// Watch reloads whenever the files' sizes or modification times change,
// checking every interval until ctx ends: certificates mounted from a
// Kubernetes secret or renewed by cert-manager change without a signal.
func (s *Source) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if statFiles(s.files) == s.cur.Load().stat {
			continue
		}
		if err := s.Reload(); err != nil {
			// Files are often replaced one at a time: the next tick sees
			// the pair complete.
			log.Warn("TLS files changed but do not load yet; keeping the previous certificate", "err", err)
			continue
		}
		log.Info("TLS certificate reloaded", "cert", s.files.Cert)
	}
}

// Certificate is the certificate currently served.
func (s *Source) Certificate() *tls.Certificate { return s.cur.Load().cert }

// ServerConfig is for listeners: gRPC and the accepting end of Raft.
func (s *Source) ServerConfig() *tls.Config {
	return s.serverConfig(s.auth)
}

// PeerServerConfig always requires a client certificate from the CA: the
// accepting end of node-to-node links (Raft) whatever the API's setting.
func (s *Source) PeerServerConfig() *tls.Config {
	return s.serverConfig(ClientAuthRequire)
}

func (s *Source) serverConfig(auth ClientAuth) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// A fresh config per handshake picks up a reloaded CA as well as a
		// reloaded certificate.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				ClientCAs:    m.pool,
				NextProtos:   []string{"h2"},
			}
			switch auth {
			case ClientAuthRequest:
				c.ClientAuth = tls.VerifyClientCertIfGiven
			case ClientAuthRequire:
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// ClientConfig is for this node's own outgoing connections (forwarding,
// joining, Raft): it presents the node's certificate and verifies the peer
// against the current CA, so both survive a reload. serverName is the name
// (or IP address) the peer's certificate must carry. gRPC clients use
// PeerCredentials, which fills it in per connection.
func (s *Source) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// Verification is ours, against the CA of the moment, because
		// RootCAs is fixed when the config is built.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			// cs.ServerName is empty for IP addresses (no SNI): the name
			// comes from the caller.
			return s.verifyServer(cs, serverName)
		},
	}
}

// ClientConfigFor is ClientConfig for a raw dial of addr (host:port).
func (s *Source) ClientConfigFor(addr string) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return s.ClientConfig(host)
}

func (s *Source) verifyServer(cs tls.ConnectionState, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the peer sent no certificate")
	}
	if serverName == "" {
		return errors.New("tls: no server name to verify the peer's certificate against")
	}
	opts := x509.VerifyOptions{
		Roots:         s.cur.Load().pool,
		DNSName:       serverName,
		Intermediates: x509.NewCertPool(),
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// PeerCredentials are gRPC transport credentials for node-to-node calls:
// each connection verifies the dialled host against the current CA and
// presents the current certificate.
func (s *Source) PeerCredentials() credentials.TransportCredentials {
	return &peerCreds{TransportCredentials: credentials.NewTLS(s.ClientConfig("")), s: s}
}

type peerCreds struct {
	credentials.TransportCredentials
	s *Source
}

func (p *peerCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(p.s.ClientConfigFor(authority)).ClientHandshake(ctx, authority, conn)
}

func (p *peerCreds) Clone() credentials.TransportCredentials {
	return &peerCreds{TransportCredentials: p.TransportCredentials.Clone(), s: p.s}
}

// ServerCredentials are gRPC credentials for the node's listeners.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerConfig())
}

// StaticClientConfig is for tools and SDK users: verify the server against
// the CA in caFile (empty: the system roots) and, if certFile and keyFile
// are given, present that certificate for mTLS.
func StaticClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tls: a client certificate needs both --tls-cert and --tls-key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
