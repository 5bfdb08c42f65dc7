package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Names of the files GenerateDev writes in its directory.
const (
	DevCACert     = "ca.pem"
	DevCAKey      = "ca-key.pem"
	DevServerCert = "server.pem"
	DevServerKey  = "server-key.pem"
	DevClientCert = "client.pem"
	DevClientKey  = "client-key.pem"
)

// devValidity is long enough for a development setup to outlive a laptop
// rebuild, short enough that nobody mistakes these for production.
const devValidity = 365 * 24 * time.Hour

// GenerateDev writes a development CA, a server certificate and a client
// certificate to dir (created if missing; existing files are overwritten).
// The server certificate names localhost, 127.0.0.1, ::1 and hosts (DNS
// names or IP addresses), and is valid for client authentication too, so
// that nodes present it to each other (Raft, forwarding). The client
// certificate is for mTLS clients, workers and gridctl.
func GenerateDev(dir string, hosts []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gridd development CA", Organization: []string{"gridd"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePair(dir, DevCACert, DevCAKey, caDER, caKey); err != nil {
		return err
	}

	srv := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "gridd node", Organization: []string{"gridd"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(devValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else if h != "" {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	if err := issue(dir, DevServerCert, DevServerKey, srv, ca, caKey); err != nil {
		return err
	}
	cli := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "gridd client", Organization: []string{"gridd"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(devValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(dir, DevClientCert, DevClientKey, cli, ca, caKey)
}

func issue(dir, certName, keyName string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: %s: %w", certName, err)
	}
	return writePair(dir, certName, keyName, der, key)
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, certName),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	// Keys are readable by their owner only.
	if err := os.WriteFile(filepath.Join(dir, keyName),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
