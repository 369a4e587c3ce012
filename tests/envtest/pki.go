package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// state is what DIR/state.json holds: the ports picked on the first start,
// reused by every later start on the same DIR (so the server URL, the
// certificates and the etcd data stay valid across a restart).
type state struct {
	EtcdClientPort int `json:"etcdClientPort"`
	EtcdPeerPort   int `json:"etcdPeerPort"`
	APIServerPort  int `json:"apiServerPort"`
}

// paths of the files serve keeps in DIR.
type paths struct {
	dir, state, pki, etcd, kubeconfig, ready                                  string
	caCert, caKey, servingCert, servingKey, adminCert, adminKey, saKey, saPub string
	apiserverLog, etcdLog, kcmLog, kcmPid                                     string
}

func newPaths(dir string) paths {
	pki := filepath.Join(dir, "pki")
	return paths{
		dir:          dir,
		state:        filepath.Join(dir, "state.json"),
		pki:          pki,
		etcd:         filepath.Join(dir, "etcd"),
		kubeconfig:   filepath.Join(dir, "kubeconfig"),
		ready:        filepath.Join(dir, "ready"),
		caCert:       filepath.Join(pki, "ca.crt"),
		caKey:        filepath.Join(pki, "ca.key"),
		servingCert:  filepath.Join(pki, "apiserver.crt"),
		servingKey:   filepath.Join(pki, "apiserver.key"),
		adminCert:    filepath.Join(pki, "admin.crt"),
		adminKey:     filepath.Join(pki, "admin.key"),
		saKey:        filepath.Join(pki, "sa.key"),
		saPub:        filepath.Join(pki, "sa.pub"),
		apiserverLog: filepath.Join(dir, "apiserver.log"),
		etcdLog:      filepath.Join(dir, "etcd.log"),
		kcmLog:       filepath.Join(dir, "kcm.log"),
		kcmPid:       filepath.Join(dir, "kcm.pid"),
	}
}

// loadOrInitState returns the persisted state of DIR, creating ports and
// certificates on the first start. state.json is written last, so an
// interrupted first start is simply redone.
func loadOrInitState(p paths) (state, bool, error) {
	var st state
	data, err := os.ReadFile(p.state)
	if err == nil {
		if err := json.Unmarshal(data, &st); err != nil {
			return st, false, fmt.Errorf("parse %s: %w", p.state, err)
		}
		for _, f := range []string{p.caCert, p.servingCert, p.servingKey, p.adminCert, p.adminKey, p.saKey, p.saPub} {
			if _, err := os.Stat(f); err != nil {
				return st, false, fmt.Errorf("%s exists but %w (remove DIR to start afresh)", p.state, err)
			}
		}
		return st, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return st, false, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return st, false, err
	}
	st = state{EtcdClientPort: ports[0], EtcdPeerPort: ports[1], APIServerPort: ports[2]}
	if err := os.MkdirAll(p.pki, 0o700); err != nil {
		return st, false, err
	}
	if err := generatePKI(p); err != nil {
		return st, false, fmt.Errorf("generate certificates: %w", err)
	}
	out, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(p.state, append(out, '\n'), 0o600); err != nil {
		return st, false, err
	}
	return st, true, nil
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1, holding
// all listeners open until every port is known so none repeats.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func generatePKI(p paths) error {
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "coffer-envtest-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	leaf := func(tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore = now
		tmpl.NotAfter = notAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		return der, key, err
	}
	servingDER, servingKey, err := leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "coffer-envtest-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return err
	}
	adminDER, adminKey, err := leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "coffer-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}

	for _, f := range []struct {
		path string
		pem  []byte
	}{
		{p.caCert, pemBytes("CERTIFICATE", caDER)},
		{p.caKey, mustKeyPEM(caKey)},
		{p.servingCert, pemBytes("CERTIFICATE", servingDER)},
		{p.servingKey, mustKeyPEM(servingKey)},
		{p.adminCert, pemBytes("CERTIFICATE", adminDER)},
		{p.adminKey, mustKeyPEM(adminKey)},
		{p.saKey, mustKeyPEM(saKey)},
		{p.saPub, pemBytes("PUBLIC KEY", saPubDER)},
	} {
		if err := writeFileAtomic(f.path, f.pem, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustKeyPEM(key crypto.Signer) []byte {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			panic(err)
		}
		return pemBytes("EC PRIVATE KEY", der)
	case *rsa.PrivateKey:
		return pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
	default:
		panic(fmt.Sprintf("unsupported key type %T", key))
	}
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
