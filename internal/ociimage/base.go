package ociimage

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Where the base puts the CA bundle and the time zone database: the paths
// Go's crypto/x509 and time (and most other programs) read on Linux.
const (
	CACertificates = "/etc/ssl/certs/ca-certificates.crt"
	ZoneInfo       = "/usr/share/zoneinfo"
)

// NonrootUser is the user distroless's :nonroot images run as.
const NonrootUser = "65532:65532"

// Base is the files of a scratch image that does what distroless/static:nonroot
// does for a static Go binary: the nonroot user (65532) and group, a
// world-writable /tmp, CA certificates and the time zone database. Both come
// from Go modules, so the base is reproducible and needs no download of an
// image: the certificates from golang.org/x/crypto/x509roots/fallback (the
// Mozilla NSS roots; the few that NSS distrusts after a date are left out,
// since a PEM file cannot carry that constraint), the zone files from the Go
// toolchain's $GOROOT/lib/time/zoneinfo.zip (the IANA tzdata the toolchain
// that compiles the binaries ships).
func Base(ctx context.Context) (Files, error) {
	files := Files{
		"/etc/passwd":   {Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"/etc/group":    {Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		"/tmp":          {Mode: 0o1777},
		"/home/nonroot": {Mode: 0o755},
		CACertificates:  {Mode: 0o644, Data: caBundle()},
	}
	zones, err := zoneFiles(ctx)
	if err != nil {
		return nil, err
	}
	for name, f := range zones {
		files[name] = f
	}
	return files, nil
}

// caBundle is the unconstrained roots of x509roots/fallback as PEM.
func caBundle() []byte {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
	}
	return buf.Bytes()
}

// zoneFiles unpacks the Go toolchain's zoneinfo.zip under ZoneInfo.
func zoneFiles(ctx context.Context) (Files, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	zoneinfo := filepath.Join(strings.TrimSpace(string(out)), "lib", "time", "zoneinfo.zip")
	zr, err := zip.OpenReader(zoneinfo)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	files := Files{}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		files[path.Join(ZoneInfo, path.Clean("/"+f.Name))] = File{Mode: 0o644, Data: data}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no zone files", zoneinfo)
	}
	return files, nil
}
