package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Authority is a CA that issues node certificates (`gear tls gen`, tests).
type Authority struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	File    string // the CA certificate (PEM): gear.tls.ca, -ca, GEAR_CA
	KeyFile string // its private key (PEM); keep it off the nodes
}

// Issued names a certificate and key file written by Issue.
type Issued struct{ Cert, Key string }

// OpenOrCreateCA loads dir/NAME.pem and dir/NAME-key.pem, or creates them
// (ECDSA P-256, valid for validity) when neither exists.
func OpenOrCreateCA(dir, name string, validity time.Duration) (*Authority, bool, error) {
	a := &Authority{File: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem")}
	certPEM, errC := os.ReadFile(a.File)
	keyPEM, errK := os.ReadFile(a.KeyFile)
	switch {
	case errC == nil && errK == nil:
		if err := a.parse(certPEM, keyPEM); err != nil {
			return nil, false, err
		}
		return a, false, nil
	case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
	case errC != nil && !errors.Is(errC, fs.ErrNotExist):
		return nil, false, errC
	case errK != nil && !errors.Is(errK, fs.ErrNotExist):
		return nil, false, errK
	default:
		return nil, false, fmt.Errorf("%s and %s: one exists without the other; restore the missing one or remove both to make a new CA", a.File, a.KeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, err
	}
	if a.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, false, err
	}
	a.key = key
	if err := writeCertAndKey(a.File, a.KeyFile, der, key); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

func (a *Authority) parse(certPEM, keyPEM []byte) error {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return fmt.Errorf("%s holds no PEM certificate", a.File)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", a.File, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return fmt.Errorf("%s holds no PEM key", a.KeyFile)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("%s: want an EC private key (as gear tls gen writes): %w", a.KeyFile, err)
	}
	a.Cert, a.key = cert, key
	return nil
}

// Issue writes dir/NAME.pem and dir/NAME-key.pem: a certificate for a
// node, valid as server and client, whose SANs are sans (IPs become IP
// SANs, other names DNS SANs).
func (a *Authority) Issue(dir, name string, sans []string, validity time.Duration) (Issued, error) {
	if len(sans) == 0 {
		return Issued{}, fmt.Errorf("certificate %s: no names (give the host as in gear.cluster.masters and its IP)", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range sans {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.key)
	if err != nil {
		return Issued{}, err
	}
	out := Issued{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
	return out, writeCertAndKey(out.Cert, out.Key, der, key)
}

func writeCertAndKey(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
