#!/usr/bin/env bash
# setup-kcluster.sh installs and builds what the local single-node cluster
# (internal/testutil/kcluster, docs/e2e.md) needs, and prints nothing but the
# tools directory on stdout. Everything is cached; a second run takes seconds.
#
#   Debian packages   containerd runc containernetworking-plugins iptables conntrack
#                     (installed with apt-get when missing; needs root)
#   bin/k8s/<ver>/    etcd and every Kubernetes binary, by hack/setup-envtest.sh with ENVTEST_NODE=1
#   bin/kcluster/     traefik, coredns, metrics-server and kube-network-policies
#                     (each built from its Go module), pause, kcluster and pause.tar
#
# Knobs: TRAEFIK_VERSION (default v3.6.12; 3.7.x needs modules the proxy here refuses),
#        COREDNS_VERSION (default v1.15.0),
#        METRICS_SERVER_VERSION (default v0.8.0; v0.9.0 is served but not an approved release),
#        NETPOL_VERSION (kube-network-policies, default v0.8.0; the patch is for that version).
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
NETPOL_VERSION="${NETPOL_VERSION:-v0.8.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/bin/kcluster"
log() { echo "setup-kcluster: $*" >&2; }

missing=()
for c in containerd containerd-shim-runc-v2 runc ctr iptables conntrack nsenter ip; do
  command -v "$c" >/dev/null || missing+=("$c")
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] || missing+=(cni-plugins)
if ((${#missing[@]})); then
  log "installing Debian packages (missing: ${missing[*]})"
  command -v apt-get >/dev/null || { log "no apt-get: install containerd, runc, containernetworking-plugins, iptables, conntrack yourself"; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends containerd runc containernetworking-plugins iptables conntrack util-linux iproute2 >/dev/null
fi

ENVTEST_NODE=1 "$ROOT/hack/setup-envtest.sh" >/dev/null

mkdir -p "$TOOLS"
exec 9>"$TOOLS/.lock"
flock 9

export GOWORK=off
unset GOOS GOARCH || true
WORK="$(mktemp -d "${TMPDIR:-/tmp}/setup-kcluster.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# built NAME VERSION: bin/kcluster/NAME exists and was built at VERSION.
built() { [[ -x "$TOOLS/$1" && "$(cat "$TOOLS/.$1-version" 2>/dev/null)" == "$2" ]]; }

# Traefik: the module has replace and exclude directives, which `go build
# module@version` ignores, so it is built in a scratch module that repeats them.
if ! built traefik "$TRAEFIK_VERSION"; then
  start=$(date +%s)
  TMOD="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@${TRAEFIK_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$TMOD" ]] || { log "could not download traefik ${TRAEFIK_VERSION}"; exit 1; }
  {
    echo "module kcluster.local/traefik"
    echo
    echo "go 1.26"
    echo
    echo "require github.com/traefik/traefik/v3 ${TRAEFIK_VERSION}"
    echo
    # Its replace ( ... ) block and exclude lines, verbatim.
    sed -n '/^replace (/,/^)/p; /^replace [^(]/p; /^exclude /p' "$TMOD"
  } >"$WORK/go.mod"
  log "building traefik ${TRAEFIK_VERSION} (first time: about 20 minutes on 2 cores)"
  (cd "$WORK" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$TOOLS/traefik.new" github.com/traefik/traefik/v3/cmd/traefik) >&2
  mv -f "$TOOLS/traefik.new" "$TOOLS/traefik"
  echo "$TRAEFIK_VERSION" >"$TOOLS/.traefik-version"
  log "built traefik in $(($(date +%s) - start))s"
fi

# CoreDNS, the cluster DNS: a scratch module whose main links only the plugins
# the Corefile (internal/testutil/kcluster) uses; the stock main links all of
# them, cloud DNS providers included. There is no forward plugin: nothing
# outside the cluster's namespace can be reached, so there is no upstream.
# Its dependencies are newer than those of the Kubernetes and Traefik builds
# (x/sys, x/net, grpc, protobuf), so it shares none of their compiled packages.
if ! built coredns "$COREDNS_VERSION"; then
  start=$(date +%s)
  mkdir -p "$WORK/coredns"
  printf 'module kcluster.local/coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns %s\n' \
    "$COREDNS_VERSION" >"$WORK/coredns/go.mod"
  cat >"$WORK/coredns/main.go" <<'GO'
// Command coredns is CoreDNS with only the plugins the test cluster's Corefile uses.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
GO
  log "building coredns ${COREDNS_VERSION} (first time: about 3 minutes on 2 cores)"
  (cd "$WORK/coredns" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$TOOLS/coredns.new" .) >&2
  mv -f "$TOOLS/coredns.new" "$TOOLS/coredns"
  echo "$COREDNS_VERSION" >"$TOOLS/.coredns-version"
  log "built coredns in $(($(date +%s) - start))s"
fi

# metrics-server: the resource metrics API (kubectl top, HorizontalPodAutoscalers
# on CPU and memory), read from the kubelet. Its go.mod has no replace
# directives, so a scratch module that requires it is all it takes.
if ! built metrics-server "$METRICS_SERVER_VERSION"; then
  start=$(date +%s)
  mkdir -p "$WORK/metrics-server"
  printf 'module kcluster.local/metrics-server\n\ngo 1.26\n\nrequire sigs.k8s.io/metrics-server %s\n' \
    "$METRICS_SERVER_VERSION" >"$WORK/metrics-server/go.mod"
  log "building metrics-server ${METRICS_SERVER_VERSION} (first time: 43 minutes on 2 cores under a load average of 20-30, k8s.io/apiserver-sized)"
  (cd "$WORK/metrics-server" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$TOOLS/metrics-server.new" sigs.k8s.io/metrics-server/cmd/metrics-server) >&2
  mv -f "$TOOLS/metrics-server.new" "$TOOLS/metrics-server"
  echo "$METRICS_SERVER_VERSION" >"$TOOLS/.metrics-server-version"
  log "built metrics-server in $(($(date +%s) - start))s"
fi

# kube-network-policies: NetworkPolicy on the node (the bridge CNI plugin
# ignores it). Built in a copy of its module with a small patch
# (hack/kcluster/kube-network-policies.patch says why): this kernel has no
# nftables queue expression, and v0.8.0 reads no kubeconfig. Its own go.mod
# and go.sum pin its dependencies.
# The stamp names the patch too: a changed patch rebuilds.
NETPOL_STAMP="${NETPOL_VERSION}+$(sha256sum "$ROOT/hack/kcluster/kube-network-policies.patch" | cut -c1-12)"
if ! built kube-network-policies "$NETPOL_STAMP"; then
  start=$(date +%s)
  NDIR="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kube-network-policies@${NETPOL_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$NDIR" ]] || { log "could not download kube-network-policies ${NETPOL_VERSION}"; exit 1; }
  cp -r "$NDIR" "$WORK/kube-network-policies"
  chmod -R u+w "$WORK/kube-network-policies"
  patch -s -d "$WORK/kube-network-policies" -p1 <"$ROOT/hack/kcluster/kube-network-policies.patch" >&2
  log "building kube-network-policies ${NETPOL_VERSION} (first time: 11 minutes on 2 cores under a load average of 12-15, 6 CPU-minutes)"
  (cd "$WORK/kube-network-policies" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$TOOLS/kube-network-policies.new" ./cmd) >&2
  mv -f "$TOOLS/kube-network-policies.new" "$TOOLS/kube-network-policies"
  echo "$NETPOL_STAMP" >"$TOOLS/.kube-network-policies-version"
  log "built kube-network-policies in $(($(date +%s) - start))s"
fi

# Our own pieces: cheap to rebuild (the Go cache makes this a link at most).
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$TOOLS/pause" ./hack/kcluster/pause &&
  CGO_ENABLED=0 go build -trimpath -o "$TOOLS/kcluster" ./hack/kcluster) >&2
"$TOOLS/kcluster" pause-image "$TOOLS/pause" "$TOOLS/pause.tar"

echo "$TOOLS"
