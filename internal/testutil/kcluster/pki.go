package kcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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

// identity is one client or serving certificate the cluster's components use.
type identity struct {
	file   string   // base name: <file>.crt and <file>.key in the PKI directory
	cn     string   // user name (client) or subject (server)
	orgs   []string // groups
	client bool
	server bool
	dns    []string
	ips    []net.IP
}

// writePKI creates a CA and every certificate the control plane, the node and
// the test's admin need, plus the service-account signing key. Existing
// files are kept: a cluster brought up twice keeps its identity, and one
// made before a certificate was added gets just the new one.
func writePKI(dir string, cfg Config) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	ca, caKey, err := loadOrCreateCA(dir, now)
	if err != nil {
		return err
	}

	apiDNS := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}
	ids := []identity{
		{file: "apiserver", cn: "kube-apiserver", server: true, dns: apiDNS,
			ips: []net.IP{net.ParseIP(cfg.NodeIP), net.ParseIP(cfg.APIServiceIP()), net.ParseIP("127.0.0.1")}},
		{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		// The aggregation layer: the API server proxies metrics.k8s.io to
		// metrics-server with this certificate, which metrics-server trusts
		// by its name (--requestheader-allowed-names) and the CA.
		{file: "front-proxy-client", cn: frontProxyClientName, client: true},
		{file: "metrics-server", cn: "metrics-server", server: true,
			dns: []string{"metrics-server.kube-system.svc", "metrics-server.kube-system.svc." + ClusterDomain},
			ips: []net.IP{net.ParseIP(cfg.NodeIP)}},
		{file: "admin", cn: "kcluster-admin", orgs: []string{"system:masters"}, client: true},
		{file: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{file: "scheduler", cn: "system:kube-scheduler", client: true},
		{file: "kube-proxy", cn: "system:kube-proxy", client: true},
		{file: "kubelet", cn: "system:node:" + cfg.NodeName, orgs: []string{"system:nodes"}, client: true},
		{file: "kubelet-serving", cn: "system:node:" + cfg.NodeName, server: true, dns: []string{cfg.NodeName}, ips: []net.IP{net.ParseIP(cfg.NodeIP)}},
	}
	for _, id := range ids {
		if fileExists(filepath.Join(dir, id.file+".crt")) {
			continue
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		// Random serials: certificates added to an existing PKI must not
		// repeat one the CA already issued.
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: id.cn, Organization: id.orgs},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			DNSNames:     id.dns,
			IPAddresses:  id.ips,
		}
		if id.client {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		if id.server {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", id.file, err)
		}
		if err := writeCertKey(dir, id.file, der, key); err != nil {
			return err
		}
	}

	if fileExists(filepath.Join(dir, "sa.key")) {
		return nil
	}
	// The service-account token signer: RSA, which every Kubernetes version accepts.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600)
}

// frontProxyClientName is the aggregation layer's client certificate name.
const frontProxyClientName = "front-proxy-client"

// loadOrCreateCA returns the cluster CA in dir, creating it when missing.
func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if fileExists(filepath.Join(dir, "ca.crt")) {
		return loadCA(dir)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "intuned-kcluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	return ca, caKey, writeCertKey(dir, "ca", caDER, caKey)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s: ca.crt or ca.key is not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func writeCertKey(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// writeKubeconfig writes a kubeconfig for the identity whose certificate is
// <pki>/<name>.crt, talking to server.
func writeKubeconfig(path, pki, name, server string) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kcluster
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kcluster
  context:
    cluster: kcluster
    user: %s
current-context: kcluster
`, server, filepath.Join(pki, "ca.crt"), name, filepath.Join(pki, name+".crt"), filepath.Join(pki, name+".key"), name)
	return os.WriteFile(path, []byte(content), 0o600)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
