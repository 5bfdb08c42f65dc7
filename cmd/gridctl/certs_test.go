package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
	"github.com/gridd/gridd/tlsconf"
)

func TestCertsDevWritesVerifiableCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out := ok(t, "certs", "dev", "--out", dir, "--host", "gridd-1.example", "--host", "10.0.0.5")
	if got := strings.Count(out, "\n"); got != 5 {
		t.Errorf("printed %d paths, want 5:\n%s", got, out)
	}
	read := func(name string) *x509.Certificate {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			t.Fatalf("%s is not PEM", name)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(read(tlsconf.DevCACert))
	srv := read(tlsconf.DevServerCert)
	for _, h := range []string{"localhost", "127.0.0.1", "gridd-1.example", "10.0.0.5"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	cli := read(tlsconf.DevClientCert)
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	for _, args := range [][]string{
		{"certs", "dev"},
		{"certs", "dev", "--out", dir, "--host", "10.0.0.5:1337"},
		{"certs", "dev", "--out", dir, "--host", "bad name"},
	} {
		if code, _, errOut := run(t, nil, args...); code != 1 || !strings.Contains(errOut, "--") {
			t.Errorf("%v: exit %d, %q; want 1 and the flag to fix", args, code, errOut)
		}
	}
}

// gridctl with the dev CA and client certificate talks to a node that
// requires mTLS, through its own calls and through the SDK (bench runs a
// client and workers); without them it is refused.
func TestTLSAgainstCluster(t *testing.T) {
	dir := t.TempDir()
	ok(t, "certs", "dev", "--out", dir)
	src, err := tlsconf.Load(tlsconf.Files{Cert: filepath.Join(dir, tlsconf.DevServerCert),
		Key: filepath.Join(dir, tlsconf.DevServerKey), CA: filepath.Join(dir, tlsconf.DevCACert)}, tlsconf.ClientAuthRequire)
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *server.Config) { cfg.TLS = src }})
	addr := c.Nodes[0].Srv.GRPCAddr()
	tlsArgs := []string{"--addr", addr, "--timeout", "3s", "--tls-ca", filepath.Join(dir, tlsconf.DevCACert),
		"--tls-cert", filepath.Join(dir, tlsconf.DevClientCert), "--tls-key", filepath.Join(dir, tlsconf.DevClientKey)}
	st := parse(t, ok(t, append(tlsArgs, "-o", "json", "cluster", "status")...), &griddpb.ClusterStatus{})
	if st.GetState() != "leader" {
		t.Errorf("status over mTLS: %v", st)
	}
	ok(t, append(tlsArgs, "bench", "--tasks", "50", "--workers", "1")...)

	env := map[string]string{"GRIDCTL_TLS_CA": filepath.Join(dir, tlsconf.DevCACert),
		"GRIDCTL_TLS_CERT": filepath.Join(dir, tlsconf.DevClientCert), "GRIDCTL_TLS_KEY": filepath.Join(dir, tlsconf.DevClientKey)}
	if code, _, errOut := run(t, env, "--addr", addr, "cluster", "status"); code != 0 {
		t.Errorf("TLS from GRIDCTL_TLS_*: exit %d: %s", code, errOut)
	}
	for name, args := range map[string][]string{
		"plaintext":      {"--addr", addr, "--timeout", "2s", "cluster", "status"},
		"no certificate": {"--addr", addr, "--timeout", "2s", "--tls-ca", filepath.Join(dir, tlsconf.DevCACert), "cluster", "status"},
		"key only":       {"--addr", addr, "--tls-key", filepath.Join(dir, tlsconf.DevClientKey), "cluster", "status"},
	} {
		if code, _, _ := run(t, nil, args...); code == 0 {
			t.Errorf("%s: gridctl was served", name)
		}
	}
}
