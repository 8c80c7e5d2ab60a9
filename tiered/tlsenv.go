package tiered

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSConfigFromEnv returns the TLS configuration named by the environment:
// REDIS_TLS_CA_FILE, a PEM file of the certificate authorities to trust for the Redis
// server's certificate instead of the system roots (for rediss:// and ?ssl=true URLs). It
// returns nil, nil when the variable is unset, and an error wrapping ErrInvalidOptions when
// the file cannot be read or holds no certificate.
func TLSConfigFromEnv() (*tls.Config, error) {
	path := os.Getenv("REDIS_TLS_CA_FILE")
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: REDIS_TLS_CA_FILE: %w", ErrInvalidOptions, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: REDIS_TLS_CA_FILE=%s holds no PEM certificate", ErrInvalidOptions, path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
