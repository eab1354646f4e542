// Package tlsconf turns gear.tls.{cert,key,ca} (and the CLI's -ca) into
// crypto/tls configurations: one a node serves with and one it dials
// with. Masters and workers present their certificate and verify peers
// against the cluster CA; the CLI only verifies the masters.
//
// The client-auth policy per protocol lives in pkg/netmux (raft and
// gossip streams require a client certificate; HTTP asks for one and
// accepts requests without it, which then need the token). tlsconf only
// loads files and says clearly what is wrong with them.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Node is a master's or worker's TLS setup.
type Node struct {
	// Server is what the node's port serves with: its certificate, and
	// the CA that peers' client certificates must chain to. ClientAuth is
	// tls.VerifyClientCertIfGiven; netmux tightens it per protocol.
	Server *tls.Config
	// Client is what the node dials peers with: its certificate as the
	// client certificate, and the CA the peers' certificates must chain to.
	Client *tls.Config
}

// Files are the gear.tls.* settings.
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether the node should speak TLS.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" }

// LoadNode loads a node's certificate, key and CA. It returns nil, nil
// when TLS is not configured (no cert and no key).
func LoadNode(f Files) (*Node, error) {
	if !f.Enabled() {
		return nil, nil // a CA alone is for clients (the CLI)
	}
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("gear.tls: set both gear.tls.cert and gear.tls.key (the node's certificate and its private key), or neither")
	}
	if f.CA == "" {
		return nil, errors.New("gear.tls.ca is not set: mutual TLS needs the CA that signed every node's certificate (a PEM file)")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("gear.tls.cert %s / gear.tls.key %s: %w (want PEM files of a certificate and its matching private key)", f.Cert, f.Key, err)
	}
	pool, err := LoadCA(f.CA)
	if err != nil {
		return nil, err
	}
	server := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	client := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
	return &Node{Server: server, Client: client}, nil
}

// LoadCA reads a PEM bundle of CA certificates.
func LoadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w (gear.tls.ca, -ca or GEAR_CA must name a PEM file)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate (want -----BEGIN CERTIFICATE-----)", file)
	}
	return pool, nil
}

// LoadClient is the CLI's configuration: it verifies the masters against
// the CA in file. cert and key, when both set, are presented as a client
// certificate (the CLI may use the token instead).
func LoadClient(caFile, cert, key string) (*tls.Config, error) {
	pool, err := LoadCA(caFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if cert != "" && key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", cert, key, err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}
