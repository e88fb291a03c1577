// Command kcluster runs the local single-node Kubernetes cluster the
// real-cluster tests use (see internal/testutil/kcluster and docs/e2e.md).
//
//	go run ./hack/kcluster up          bring it up (binaries from hack/setup-kcluster.sh)
//	go run ./hack/kcluster image       build the project's image and import it into the node
//	go run ./hack/kcluster down        stop it and remove its namespace, mounts and interfaces
//	go run ./hack/kcluster down -purge ... and its state directory
//	go run ./hack/kcluster status      which components run
//	kcluster provisioner ...           the volume provisioner (started by up)
//	kcluster pause-image BIN OUT       write the sandbox image (hack/setup-kcluster.sh)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/intuned-operator/intuned-operator/internal/ociimage"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
)

// ProjectImage is the tag the local image of this repository gets.
const ProjectImage = kcluster.ProjectImageTag

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up", "down", "status", "image":
		err = clusterCommand(ctx, os.Args[1], os.Args[2:])
	case "provisioner":
		err = provisioner(ctx, os.Args[2:])
	case "pause-image":
		err = pauseImage(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kcluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kcluster up|down [-purge]|status|image|provisioner [flags]")
	os.Exit(2)
}

func clusterCommand(ctx context.Context, cmd string, args []string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	def := kcluster.DefaultLayout(root)
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	dir := fs.String("dir", def.Dir, "state directory")
	k8sBin := fs.String("k8s-bin", def.K8sBin, "directory of the Kubernetes binaries")
	toolsBin := fs.String("tools-bin", def.ToolsBin, "directory of traefik, coredns, pause and kcluster")
	purge := fs.Bool("purge", false, "down: also remove the state directory")
	_ = fs.Parse(args)
	c, err := kcluster.New(kcluster.DefaultConfig(*dir, *k8sBin, *toolsBin), func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		return err
	}
	switch cmd {
	case "up":
		if err := c.Up(ctx); err != nil {
			return err
		}
		fmt.Printf("export KUBECONFIG=%s\n", c.Config().AdminKubeconfig())
	case "down":
		return c.Down(*purge)
	case "image":
		out := filepath.Join(*toolsBin, "intuned-operator.tar")
		if _, err := kcluster.BuildProjectImage(ctx, root, filepath.Join(*toolsBin, "image"), out, ProjectImage); err != nil {
			return err
		}
		if err := c.ImportImage(ctx, out); err != nil {
			return err
		}
		fmt.Println(ProjectImage)
	case "status":
		run := c.Running()
		names := make([]string, 0, len(run))
		for n := range run {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("%-24s %v\t%s\n", n, run[n], c.Config().LogFile(n))
		}
	}
	return nil
}

func provisioner(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	dir := fs.String("dir", "", "directory for volumes")
	node := fs.String("node", "", "node name")
	name := fs.String("name", kcluster.ProvisionerName, "provisioner name")
	_ = fs.Parse(args)
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	p := &kcluster.Provisioner{Client: cs, Name: *name, Dir: *dir, Node: *node, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	return p.Run(ctx)
}

// repoRoot is the directory holding go.mod, found upwards from here.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("not inside the repository (no go.mod above the working directory)")
		}
		d = p
	}
}

// pauseImage writes the sandbox image around a static pause binary.
func pauseImage(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: kcluster pause-image PAUSE_BINARY OUT.tar")
	}
	_, err := ociimage.WriteFilesArchive(args[1], kcluster.PauseImage, kcluster.NodePlatform,
		ociimage.Files{"/pause": {Mode: 0o755, Src: args[0]}},
		ociimage.Config{User: "65535:65535", Entrypoint: []string{"/pause"}})
	return err
}
