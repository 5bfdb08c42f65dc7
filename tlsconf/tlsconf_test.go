package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func devFiles(t *testing.T, dir string, hosts ...string) Files {
	t.Helper()
	if err := GenerateDev(dir, hosts); err != nil {
		t.Fatal(err)
	}
	return Files{Cert: filepath.Join(dir, DevServerCert), Key: filepath.Join(dir, DevServerKey), CA: filepath.Join(dir, DevCACert)}
}

func TestGenerateDevNamesAndUsages(t *testing.T) {
	dir := t.TempDir()
	f := devFiles(t, dir, "gridd-1.example", "10.1.2.3")
	src, err := Load(f, ClientAuthRequire)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(src.Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "gridd-1.example", "10.1.2.3", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate does not name %s: %v", name, err)
		}
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Error("server certificate cannot authenticate a node to its peers")
	}
	fi, err := os.Stat(filepath.Join(dir, DevCAKey))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("CA key mode %v: readable by others", fi.Mode().Perm())
	}
	if _, err := StaticClientConfig(filepath.Join(dir, DevCACert), filepath.Join(dir, DevClientCert), filepath.Join(dir, DevClientKey)); err != nil {
		t.Fatal(err)
	}
}

// serve accepts TLS connections and writes the first byte back, so a
// client sees a completed handshake from both sides.
func serve(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return nil, err
	}
	// With TLS 1.3 a refused client certificate shows up on the first read.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestClientAuthAndVerification(t *testing.T) {
	dir := t.TempDir()
	f := devFiles(t, dir)
	src, err := Load(f, ClientAuthRequire)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, src.ServerConfig())

	withCert, err := StaticClientConfig(f.CA, filepath.Join(dir, DevClientCert), filepath.Join(dir, DevClientKey))
	if err != nil {
		t.Fatal(err)
	}
	withCert.ServerName = "127.0.0.1"
	if _, err := roundTrip(addr, withCert); err != nil {
		t.Fatalf("client with the CA and a certificate: %v", err)
	}
	noCert, _ := StaticClientConfig(f.CA, "", "")
	noCert.ServerName = "127.0.0.1"
	if _, err := roundTrip(addr, noCert); err == nil {
		t.Error("mTLS listener accepted a client without a certificate")
	}
	noCA := &tls.Config{ServerName: "127.0.0.1", Certificates: withCert.Certificates}
	if _, err := roundTrip(addr, noCA); err == nil {
		t.Error("a client without the CA accepted the server")
	}
	// A node's own client config: its server certificate, verified by name.
	if _, err := roundTrip(addr, src.ClientConfigFor(addr)); err != nil {
		t.Errorf("peer config: %v", err)
	}
	other := devFiles(t, t.TempDir())
	stranger, err := Load(other, ClientAuthNone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(addr, stranger.ClientConfigFor(addr)); err == nil {
		t.Error("a node of another CA was accepted")
	}
}

func TestReloadServesNewCertificate(t *testing.T) {
	dir := t.TempDir()
	f := devFiles(t, dir)
	src, err := Load(f, ClientAuthNone)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, src.ServerConfig())
	client := func() *tls.Config {
		c, err := StaticClientConfig(f.CA, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c.ServerName = "localhost"
		return c
	}
	before, err := roundTrip(addr, client())
	if err != nil {
		t.Fatal(err)
	}
	// A new CA and certificates in the same files: until Reload, handshakes
	// use the old ones.
	if err := GenerateDev(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(addr, client()); err == nil {
		t.Fatal("the old certificate verified against the new CA")
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	after, err := roundTrip(addr, client())
	if err != nil {
		t.Fatalf("after reload: %v", err)
	}
	if before.SerialNumber.Cmp(after.SerialNumber) == 0 {
		t.Error("the listener still serves the old certificate")
	}
	// A broken file leaves the loaded certificate in place.
	if err := os.WriteFile(f.Key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil {
		t.Error("reload accepted a broken key")
	}
	if _, err := roundTrip(addr, client()); err != nil {
		t.Errorf("a failed reload took the listener down: %v", err)
	}
}

func TestLoadRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	f := devFiles(t, dir)
	if _, err := Load(Files{Cert: f.Cert, Key: f.Key}, ClientAuthRequire); err == nil {
		t.Error("require without a CA was accepted")
	}
	if _, err := Load(Files{Cert: f.Cert, Key: filepath.Join(dir, DevClientKey), CA: f.CA}, ClientAuthNone); err == nil {
		t.Error("a key of another certificate was accepted")
	}
	if _, err := Load(Files{Cert: f.Cert, Key: f.Key, CA: f.Key}, ClientAuthNone); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
	if _, err := ParseClientAuth("sometimes"); err == nil {
		t.Error("ParseClientAuth accepted nonsense")
	}
}
