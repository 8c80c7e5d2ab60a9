package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// CA is a certificate authority made at test time.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	Pool    *x509.CertPool // holds Cert only
}

// NewCA makes a fresh self-signed CA (ECDSA P-256, valid for an hour).
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("redistest: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "redistest CA", Organization: []string{"tiercache tests"}},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("redistest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("redistest: CA certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool}
}

// ServerCert issues a server certificate for 127.0.0.1, ::1 and localhost, returned as PEM
// certificate and key.
func (ca *CA) ServerCert(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("redistest: server key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("redistest: server certificate: %v", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("redistest: server key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("redistest: serial: %v", err)
	}
	return n
}

// TLSServer is a redis-server that accepts TLS connections only (--port 0), with a
// certificate from its own CA. Clients need not present a certificate.
type TLSServer struct {
	p      *proc
	CA     *CA
	CAFile string // the CA certificate, PEM, for REDIS_TLS_CA_FILE

	mu    sync.Mutex // protects admin
	admin rueidis.Client
}

// StartTLS starts a TLS-only redis-server on a free loopback port and registers its shutdown
// with t.Cleanup. extraArgs are appended to the command line.
func StartTLS(t testing.TB, extraArgs ...string) *TLSServer {
	t.Helper()
	bin := mustBinary(t)
	dir := t.TempDir()
	ca := NewCA(t)
	certPEM, keyPEM := ca.ServerCert(t)
	files := map[string][]byte{"ca.pem": ca.CertPEM, "server.pem": certPEM, "server-key.pem": keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	s := &TLSServer{CA: ca, CAFile: filepath.Join(dir, "ca.pem")}
	cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	s.p = &proc{
		t:       t,
		bin:     bin,
		logFile: filepath.Join(dir, "redis.log"),
		args: func(port int) []string {
			return append([]string{
				"--port", "0",
				"--tls-port", strconv.Itoa(port),
				"--tls-cert-file", filepath.Join(dir, "server.pem"),
				"--tls-key-file", filepath.Join(dir, "server-key.pem"),
				"--tls-ca-cert-file", s.CAFile,
				"--tls-auth-clients", "no",
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--save", "",
				"--appendonly", "no",
				"--daemonize", "no",
				"--logfile", filepath.Join(dir, "redis.log"),
			}, extraArgs...)
		},
		ready: func(addr string) error { return pingTLS(addr, cfg) },
	}
	startProc(t, s.p)
	t.Cleanup(s.closeAdmin)
	return s
}

func pingTLS(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return pingConn(c)
}

// Addr is host:port of the TLS listener.
func (s *TLSServer) Addr() string { return s.p.addr() }

// URL is a rediss:// URL of the server, with extra query parameters appended as given.
func (s *TLSServer) URL(query ...string) string {
	u := "rediss://" + s.Addr() + "/0"
	if len(query) > 0 {
		u += "?" + strings.Join(query, "&")
	}
	return u
}

// ClientTLSConfig trusts the server's CA, and nothing else.
func (s *TLSServer) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CA.Pool, MinVersion: tls.VersionTLS12}
}

// Stop kills the server.
func (s *TLSServer) Stop() { s.closeAdmin(); s.p.stop() }

func (s *TLSServer) closeAdmin() {
	s.mu.Lock()
	a := s.admin
	s.admin = nil
	s.mu.Unlock()
	if a != nil {
		a.Close()
	}
}

// Do runs one command over TLS on an admin client and fails the test on error.
func (s *TLSServer) Do(args ...string) rueidis.RedisResult {
	s.p.t.Helper()
	s.mu.Lock()
	if s.admin == nil {
		c, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress: []string{s.Addr()}, TLSConfig: s.ClientTLSConfig(),
			DisableCache: true, ForceSingleClient: true, ClientName: "redistest-admin",
		})
		if err != nil {
			s.mu.Unlock()
			s.p.t.Fatalf("redistest: admin client: %v", err)
		}
		s.admin = c
	}
	c := s.admin
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	if err := res.Error(); err != nil && !rueidis.IsRedisNil(err) {
		s.p.t.Fatalf("redistest: %s: %v", strings.Join(args, " "), err)
	}
	return res
}
