package ociimage

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"runtime/debug"
	"sort"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
	packageurl "github.com/package-url/packageurl-go"
)

// SBOMOptions name the image the SBOM describes.
type SBOMOptions struct {
	Name    string // e.g. ghcr.io/intuned-operator/intuned-operator
	Version string // e.g. v1.2.3
}

// SBOM is a CycloneDX (JSON) SBOM of the project image: the image (by its
// index digest), each platform's binaries (with their SHA-256), every Go
// module compiled into them as the binaries' own build info records it
// (module path, version, go.sum hash), the Go standard library, and the
// base's CA bundle and time zone data. It holds no timestamp and its serial
// number derives from the digest, so it is as reproducible as the image.
func SBOM(p *Project, o SBOMOptions) ([]byte, error) {
	digest, err := p.Index.Digest()
	if err != nil {
		return nil, err
	}
	image := cdx.Component{
		BOMRef: "image", Type: cdx.ComponentTypeContainer, Name: o.Name, Version: o.Version,
		PackageURL: packageurl.NewPackageURL(packageurl.TypeOCI, "", path.Base(o.Name), digest.String(),
			packageurl.QualifiersFromMap(map[string]string{"repository_url": o.Name, "tag": o.Version}), "").ToString(),
		Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: digest.Hex}},
	}
	modules := map[string]cdx.Component{} // by purl
	var binaries []cdx.Component
	var deps []cdx.Dependency
	var goVersion string
	platforms := make([]string, 0, len(p.Binaries))
	for plat := range p.Binaries {
		platforms = append(platforms, plat)
	}
	sort.Strings(platforms)
	for _, plat := range platforms {
		dests := make([]string, 0, len(p.Binaries[plat]))
		for dest := range p.Binaries[plat] {
			dests = append(dests, dest)
		}
		sort.Strings(dests)
		for _, dest := range dests {
			file := p.Binaries[plat][dest]
			bi, err := buildinfo.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			sum := sha256.Sum256(data)
			goVersion = bi.GoVersion
			ref := plat + dest
			binaries = append(binaries, cdx.Component{
				BOMRef: ref, Type: cdx.ComponentTypeApplication, Name: path.Base(dest), Version: bi.Main.Version,
				PackageURL: moduleComponent(&bi.Main).PackageURL,
				Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hex.EncodeToString(sum[:])}},
				Properties: &[]cdx.Property{{Name: "image:path", Value: dest}, {Name: "image:platform", Value: plat}, {Name: "build:go", Value: bi.GoVersion}},
			})
			var uses []string
			for _, m := range bi.Deps {
				c := moduleComponent(m)
				modules[c.PackageURL] = c
				uses = append(uses, c.BOMRef)
			}
			std := stdlib(bi.GoVersion)
			modules[std.PackageURL] = std
			deps = append(deps, cdx.Dependency{Ref: ref, Dependencies: sorted(append(uses, std.BOMRef))})
		}
	}
	files := []cdx.Component{
		{BOMRef: "file:" + CACertificates, Type: cdx.ComponentTypeFile, Name: CACertificates,
			Description: "Mozilla NSS roots from golang.org/x/crypto/x509roots/fallback"},
		{BOMRef: "file:" + ZoneInfo, Type: cdx.ComponentTypeData, Name: ZoneInfo, Version: goVersion,
			Description: "IANA time zone database from the Go toolchain's lib/time/zoneinfo.zip"},
	}
	var components []cdx.Component
	components = append(components, binaries...)
	components = append(components, files...)
	purls := make([]string, 0, len(modules))
	for purl := range modules {
		purls = append(purls, purl)
	}
	sort.Strings(purls)
	for _, purl := range purls {
		components = append(components, modules[purl])
	}
	var top []string
	for _, c := range binaries {
		top = append(top, c.BOMRef)
	}
	for _, c := range files {
		top = append(top, c.BOMRef)
	}
	deps = append([]cdx.Dependency{{Ref: image.BOMRef, Dependencies: &top}}, deps...)

	bom := cdx.NewBOM()
	bom.SerialNumber = uuid.NewSHA1(uuid.NameSpaceURL, []byte(image.PackageURL)).URN()
	bom.Metadata = &cdx.Metadata{
		Component: &image,
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeLibrary, Name: "intuned-operator/internal/ociimage",
			Description: "built with github.com/google/go-containerregistry, SBOM with github.com/CycloneDX/cyclonedx-go",
		}}},
	}
	bom.Components = &components
	bom.Dependencies = &deps
	var buf bytes.Buffer
	if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// moduleComponent is a Go module as CycloneDX describes it: purl
// pkg:golang/<path>@<version>, and the go.sum hash (h1:, a SHA-256) as its
// hash. A replaced module is described by its replacement, what was compiled.
func moduleComponent(m *debug.Module) cdx.Component {
	if m.Replace != nil {
		m = m.Replace
	}
	ns, name := path.Split(m.Path)
	c := cdx.Component{
		Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version,
		PackageURL: packageurl.NewPackageURL(packageurl.TypeGolang, strings.TrimSuffix(ns, "/"), name, m.Version, nil, "").ToString(),
	}
	c.BOMRef = c.PackageURL
	if sum, ok := strings.CutPrefix(m.Sum, "h1:"); ok {
		if b, err := base64.StdEncoding.DecodeString(sum); err == nil {
			c.Hashes = &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hex.EncodeToString(b)}}
		}
	}
	return c
}

func stdlib(goVersion string) cdx.Component {
	c := cdx.Component{Type: cdx.ComponentTypeLibrary, Name: "stdlib", Version: goVersion,
		PackageURL: packageurl.NewPackageURL(packageurl.TypeGolang, "", "stdlib", goVersion, nil, "").ToString()}
	c.BOMRef = c.PackageURL
	return c
}

func sorted(s []string) *[]string {
	sort.Strings(s)
	return &s
}
