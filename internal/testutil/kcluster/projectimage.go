package kcluster

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/intuned-operator/intuned-operator/internal/ociimage"
)

// DockerfileImage is what the repository's Dockerfile says the image is
// (see ociimage.ParseDockerfile).
type DockerfileImage = ociimage.Dockerfile

// NodePlatform is the platform of the images the node runs: this machine's.
const NodePlatform = "linux/" + runtime.GOARCH

// BuildProjectImage builds the image of the source tree at repoRoot as a
// release does (ociimage.BuildProject: the binaries its Dockerfile's build
// stage compiles, with the same flags and environment, laid out as its
// runtime stage on a distroless-like base), for the node's platform only,
// and writes it as an OCI archive named tag to out. The binaries stay in
// bin, for tests that run one of them outside the cluster.
func BuildProjectImage(ctx context.Context, repoRoot, bin, out, tag string) (*DockerfileImage, error) {
	p, err := ociimage.BuildProject(ctx, ociimage.ProjectOptions{
		RepoRoot: repoRoot, Platforms: []string{NodePlatform},
		BinDir: func(v1.Platform) string { return bin },
	})
	if err != nil {
		return nil, err
	}
	_, err = ociimage.WriteArchive(out, tag, p.Index)
	return p.Dockerfile, err
}

// OperatorNamespace is where the installer puts the manager.
const OperatorNamespace = "intuned-operator-system"

// InstallOperator installs the operator as a user does: it renders the
// installer into dir (make installer with image ProjectImageTag: install.yaml,
// admission-policy.yaml and the namespaced variants), applies install.yaml and,
// with admissionPolicy, the optional admission policy (Kubernetes 1.36+), and
// waits for the manager's rollout. The image must be imported already.
func (c *Cluster) InstallOperator(ctx context.Context, repoRoot, dir string, admissionPolicy bool) error {
	return c.InstallOperatorFrom(ctx, repoRoot, dir, ProjectImageTag, admissionPolicy)
}

// InstallOperatorFrom is InstallOperator with the installer of another tree
// (src: e.g. an older commit of this repository, exported) and image img.
// Applied over an install that is already there, it is the kustomize
// upgrade docs/upgrade.md describes.
func (c *Cluster) InstallOperatorFrom(ctx context.Context, src, dir, img string, admissionPolicy bool) error {
	install := filepath.Join(dir, "install.yaml")
	cmd := exec.CommandContext(ctx, "make", "-s", "installer", "IMG="+img, "INSTALLER="+install)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make installer in %s: %w\n%s", src, err, out)
	}
	files := []string{install}
	if admissionPolicy {
		files = append(files, filepath.Join(dir, "admission-policy.yaml"))
	}
	for _, f := range files {
		if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", f); err != nil {
			return err
		}
	}
	_, err := c.Kubectl(ctx, "-n", OperatorNamespace, "rollout", "status", "deployment/intuned-operator-controller-manager", "--timeout=3m")
	return err
}
