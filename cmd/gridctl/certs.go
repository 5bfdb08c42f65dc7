package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/gridd/gridd/tlsconf"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// resolveTLS fills the TLS flags from GRIDCTL_TLS_* and loads them: any of
// them turns TLS on.
func (g *globals) resolveTLS(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"tls-ca", &g.tlsCA}, {"tls-cert", &g.tlsCert}, {"tls-key", &g.tlsKey}} {
		env := "GRIDCTL_" + strings.ToUpper(strings.ReplaceAll(f.flag, "-", "_"))
		if v, ok := lookupEnv(env); ok && !fs.Changed(f.flag) {
			*f.dst = v
		}
	}
	if g.tlsCA == "" && g.tlsCert == "" && g.tlsKey == "" {
		return nil
	}
	cfg, err := tlsconf.StaticClientConfig(g.tlsCA, g.tlsCert, g.tlsKey)
	if err != nil {
		return fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
	}
	g.tls = cfg
	return nil
}

// creds are the transport credentials of gridctl's own connections.
func (g *globals) creds() credentials.TransportCredentials {
	if g.tls == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(g.tls)
}

const certsDevLong = `gridctl certs dev writes a development CA and certificates signed by it, made
with Go's crypto/x509 (ECDSA P-256, valid one year):

  ca.pem, ca-key.pem          the CA; give ca.pem to gridd (--tls-ca), clients
                              and workers; keep ca-key.pem to yourself
  server.pem, server-key.pem  every gridd node's certificate, for localhost,
                              127.0.0.1, ::1 and each --host; it also
                              authenticates nodes to each other (Raft, forwarding)
  client.pem, client-key.pem  a client certificate for mTLS (clients, workers,
                              gridctl)

For development only: production certificates come from your own CA, with one
certificate per node naming its advertised addresses.`

const certsDevExample = `  gridctl certs dev --out certs --host gridd-1 --host 10.0.0.5
  gridd --tls-cert certs/server.pem --tls-key certs/server-key.pem --tls-ca certs/ca.pem --tls-client-auth require
  gridctl --tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client-key.pem cluster status`

func newCertsCmd() *cobra.Command {
	var out string
	var hosts []string
	dev := &cobra.Command{
		Use:     "dev --out DIR",
		Short:   "Write a development CA, a server certificate and a client certificate",
		Long:    certsDevLong,
		Example: certsDevExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(out) == "" {
				return fmt.Errorf("--out: name the directory to write the certificates to")
			}
			for _, h := range hosts {
				if !validHost(h) {
					return fmt.Errorf("--host %q: want a DNS name (like gridd-1.example) or an IP address, without a port", h)
				}
			}
			if err := tlsconf.GenerateDev(out, hosts); err != nil {
				return err
			}
			for _, f := range []string{tlsconf.DevCACert, tlsconf.DevServerCert, tlsconf.DevServerKey, tlsconf.DevClientCert, tlsconf.DevClientKey} {
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(out, f))
			}
			return nil
		},
	}
	dev.Flags().StringVar(&out, "out", "", "directory to write the PEM files to (created if missing; existing files are replaced)")
	dev.Flags().StringSliceVar(&hosts, "host", nil, "extra DNS name or IP address for the server certificate (repeat or comma-separate)")
	return group("certs", "Make TLS certificates for development", dev)
}

// validHost accepts an IP address or a DNS name (a leading "*." for a
// wildcard).
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
