// Command chart packages the Helm chart (charts/intuned-operator) with Helm's
// Go library, so a release needs no helm binary:
//
//	go run ./hack/chart package -version 1.2.3 [-app-version v1.2.3] [-repository REPO] [-digest sha256:...] [-out dist/chart]
//
// It sets the chart's version and appVersion (the default image tag), and
// with -digest the default of image.digest, so the packaged chart pulls
// exactly the image the release built. It prints the path of the .tgz. The
// archive is reproducible: every file carries the time of SOURCE_DATE_EPOCH
// (default 1980-01-01), so the same inputs give the same bytes.
// `make chart` runs it; docs/helm.md describes it.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "package" {
		fmt.Fprintln(os.Stderr, "usage: chart package -version X [-app-version Y] [-repository REPO] [-digest sha256:...] [-chart DIR] [-out DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("package", flag.ExitOnError)
	var o options
	fs.StringVar(&o.version, "version", "", "chart version (SemVer, required)")
	fs.StringVar(&o.appVersion, "app-version", "", "appVersion, the default image tag (default: -version)")
	fs.StringVar(&o.digest, "digest", "", "image digest (sha256:...) to pin as the default image.digest")
	fs.StringVar(&o.repository, "repository", "", "default image.repository (default: the chart's own)")
	fs.StringVar(&o.chartDir, "chart", "charts/intuned-operator", "chart directory")
	fs.StringVar(&o.outDir, "out", "dist/chart", "directory for the .tgz")
	_ = fs.Parse(os.Args[2:])
	path, err := packageChart(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart package:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

type options struct {
	version, appVersion, digest, repository, chartDir, outDir string
}

// digestLine is image.digest's line in values.yaml.
var digestLine = regexp.MustCompile(`(?m)^  digest: ""$`)

// repositoryLine is image.repository's line in values.yaml (the only
// two-space-indented repository: the receiver's image is the manager's).
var repositoryLine = regexp.MustCompile(`(?m)^  repository: \S+$`)

var digestFormat = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

func packageChart(o options) (string, error) {
	if o.version == "" {
		return "", fmt.Errorf("-version is required")
	}
	if o.appVersion == "" {
		o.appVersion = o.version
	}
	ch, err := loader.LoadDir(o.chartDir)
	if err != nil {
		return "", err
	}
	ch.Metadata.Version = o.version
	ch.Metadata.AppVersion = o.appVersion
	if o.repository != "" {
		if err := setValuesLine(ch, repositoryLine, "  repository: "+o.repository); err != nil {
			return "", err
		}
	}
	if o.digest != "" {
		if !digestFormat.MatchString(o.digest) {
			return "", fmt.Errorf("-digest %q: want sha256:<64 hex digits>", o.digest)
		}
		if err := setValuesLine(ch, digestLine, `  digest: "`+o.digest+`"`); err != nil {
			return "", err
		}
	}
	mtime, err := sourceDate()
	if err != nil {
		return "", err
	}
	ch.StampModTimes(mtime) // otherwise each file's own time, or the time of packaging
	return chartutil.Save(ch, o.outDir)
}

// setValuesLine replaces the one line of values.yaml that line matches.
// The package keeps the file as written (comments and all: `helm show
// values` prints it), so the value goes into that line, not into a
// re-marshalled map.
func setValuesLine(ch *chart.Chart, line *regexp.Regexp, with string) error {
	for _, f := range ch.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		if n := len(line.FindAllIndex(f.Data, -1)); n != 1 {
			return fmt.Errorf("values.yaml: %d lines matching %s, want exactly 1", n, line)
		}
		f.Data = line.ReplaceAll(f.Data, []byte(with))
		// The loaded values too, which Save validates (and writes for charts
		// without a raw values.yaml).
		values, err := common.ReadValues(f.Data)
		if err != nil {
			return err
		}
		ch.Values = values
		if got := bytes.Count(f.Data, []byte(with)); got != 1 {
			return fmt.Errorf("values.yaml: %q written %d times", with, got)
		}
		return nil
	}
	return fmt.Errorf("%s has no values.yaml", ch.Name())
}

// sourceDate is SOURCE_DATE_EPOCH (reproducible-builds.org), else 1980-01-01.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(sec, 0).UTC(), nil
}
