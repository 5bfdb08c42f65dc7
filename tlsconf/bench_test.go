package tlsconf

import (
	"path/filepath"
	"testing"
)

// BenchmarkHandshakeMTLS is the cost of one new mutual-TLS connection with
// the development certificates (ECDSA P-256), loopback round trip
// included: what a reconnecting client or a new Raft connection pays.
func BenchmarkHandshakeMTLS(b *testing.B) {
	dir := b.TempDir()
	if err := GenerateDev(dir, nil); err != nil {
		b.Fatal(err)
	}
	f := Files{Cert: filepath.Join(dir, DevServerCert), Key: filepath.Join(dir, DevServerKey), CA: filepath.Join(dir, DevCACert)}
	src, err := Load(f, ClientAuthRequire)
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, src.ServerConfig())
	cfg := src.ClientConfigFor(addr)
	for b.Loop() {
		if _, err := roundTrip(addr, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
