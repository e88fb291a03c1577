#!/usr/bin/env bash
# setup-envtest.sh builds the control-plane binaries envtest needs (kube-apiserver,
# etcd, kubectl) from Go modules and prints the KUBEBUILDER_ASSETS directory.
#
# Why build instead of download: the usual envtest download site is unreachable
# here; only the Go module proxy is. So we compile the binaries from the exact
# module versions Kubernetes publishes.
#
#   kube-apiserver, kubectl  k8s.io/kubernetes cmd/... in a scratch module. The
#                            k8s.io/kubernetes go.mod points its "staging" modules
#                            (k8s.io/api, k8s.io/client-go, ...) at ./staging/src,
#                            which only works inside its own repo, so the scratch
#                            module replaces each of them with its published
#                            v0.<minor>.<patch> version.
#   etcd                     a tiny main calling etcdmain.Main, at the etcd
#                            version k8s.io/kubernetes's go.mod uses.
#
# Output: bin/k8s/<version>/{kube-apiserver,etcd,kubectl} (repo-relative).
# With ENVTEST_NODE=1 the same `go build` also produces the binaries a real
# node needs (kube-controller-manager, kube-scheduler, kubelet, kube-proxy):
# one build shares the compiled packages, far cheaper than two (hack/setup-kcluster.sh).
# Builds are skipped when every binary exists and reports the right version.
# Stdout carries ONLY the absolute assets directory; progress goes to stderr:
#
#   export KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh)"
#
# Knobs (environment):
#   ENVTEST_K8S_VERSION   Kubernetes version to build (default 1.37.2)
#   ENVTEST_ETCD_VERSION  etcd version (default: read from k8s.io/kubernetes's go.mod)
#   ENVTEST_FORCE=1       rebuild even when cached binaries look right
#   ENVTEST_NODE=1        also build the node binaries (see above)
#   ENVTEST_APISERVER_ONLY=1  build kube-apiserver alone (no etcd, no kubectl): an
#                         older API server to check the install against
#                         (test/config), run with the current etcd and kubectl.
#                         Saves building an older kubectl and etcd (cold: minutes)
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
K8S_VERSION="${K8S_VERSION#v}"
K8S_MAJOR="${K8S_VERSION%%.*}"
K8S_MINOR="${K8S_VERSION#*.}"
K8S_MINOR="${K8S_MINOR%%.*}"
K8S_PATCH="${K8S_VERSION##*.}"
# Staging modules are published as v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_MINOR}.${K8S_PATCH}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ASSETS_DIR="${ROOT}/bin/k8s/${K8S_VERSION}"
K8S_BINARIES=(kube-apiserver kubectl)
APISERVER_ONLY="${ENVTEST_APISERVER_ONLY:-}"
if [[ "$APISERVER_ONLY" == "1" ]]; then
  K8S_BINARIES=(kube-apiserver)
elif [[ "${ENVTEST_NODE:-}" == "1" ]]; then
  K8S_BINARIES+=(kube-controller-manager kube-scheduler kubelet kube-proxy)
fi

log() { echo "setup-envtest: $*" >&2; }

# cached_ok succeeds when every binary exists and reports the wanted version.
# The etcd version is only known after reading the kubernetes go.mod, so when
# ENVTEST_ETCD_VERSION is unset we accept whatever etcd reports (it was built by
# this script for this Kubernetes version, recorded in the .etcd-version file).
# Outputs are captured before matching: with pipefail, `cmd | grep -q` can fail
# when grep exits early and cmd gets SIGPIPE.
cached_ok() {
  local d="$1" out
  local b
  for b in "${K8S_BINARIES[@]}"; do
    [[ -x "$d/$b" ]] || return 1
    [[ "$b" == kubectl ]] && continue
    out="$("$d/$b" --version 2>/dev/null)" || return 1
    grep -qx "Kubernetes v${K8S_VERSION}" <<<"$out" || return 1
  done
  [[ "$APISERVER_ONLY" == "1" ]] && return 0
  [[ -x "$d/etcd" ]] || return 1
  out="$("$d/kubectl" version --client 2>/dev/null)" || return 1
  grep -qx "Client Version: v${K8S_VERSION}" <<<"$out" || return 1
  local want_etcd="${ENVTEST_ETCD_VERSION:-}"
  if [[ -z "$want_etcd" && -f "$d/.etcd-version" ]]; then
    want_etcd="$(cat "$d/.etcd-version")"
  fi
  [[ -n "$want_etcd" ]] || return 1
  out="$("$d/etcd" --version 2>/dev/null)" || return 1
  grep -qx "etcd Version: ${want_etcd#v}" <<<"$out" || return 1
}

if [[ "${ENVTEST_FORCE:-}" != "1" ]] && cached_ok "$ASSETS_DIR"; then
  echo "$ASSETS_DIR"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
mkdir -p "$ROOT/bin/k8s"

# Serialise concurrent runs (several test runs may start at once); the second
# one waits and then finds the cache filled.
exec 9>"$ROOT/bin/k8s/.lock"
if command -v flock >/dev/null; then
  flock 9
fi
if [[ "${ENVTEST_FORCE:-}" != "1" ]] && cached_ok "$ASSETS_DIR"; then
  echo "$ASSETS_DIR"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/setup-envtest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Scratch modules must not inherit the caller's module/workspace settings.
export GOWORK=off
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
unset GOOS GOARCH || true

start=$(date +%s)

log "fetching k8s.io/kubernetes@v${K8S_VERSION} (first time: large download)"
KGOMOD="$(cd "$WORK" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[[ -f "$KGOMOD" ]] || { log "could not find go.mod of k8s.io/kubernetes@v${K8S_VERSION}"; exit 1; }

# Staging modules = the ones kubernetes replaces with ./staging/src/k8s.io/<name>.
# Only those it actually requires are replaced: a few (sample-*) are never
# published and are not part of the build graph anyway.
mapfile -t STAGING < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$KGOMOD")
[[ ${#STAGING[@]} -gt 0 ]] || { log "no staging replaces found in $KGOMOD"; exit 1; }

ETCD_VERSION="${ENVTEST_ETCD_VERSION:-}"
if [[ -z "$ETCD_VERSION" ]]; then
  ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$KGOMOD")"
fi
[[ -n "$ETCD_VERSION" ]] || { log "could not determine the etcd version"; exit 1; }
ETCD_VERSION="v${ETCD_VERSION#v}"

# --- kube-apiserver + kubectl ------------------------------------------------
KMOD="$WORK/k8s"
mkdir -p "$KMOD"
{
  echo "module envtest.local/k8s"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo
  echo "replace ("
  for m in "${STAGING[@]}"; do
    if grep -Eq "^[[:space:]]*${m//./\\.}[[:space:]]+v0\.0\.0" "$KGOMOD"; then
      echo "	$m => $m ${STAGING_VERSION}"
    fi
  done
  echo ")"
} >"$KMOD/go.mod"

BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X ${pkg}.gitVersion=v${K8S_VERSION}"
  LDFLAGS+=" -X ${pkg}.gitMajor=${K8S_MAJOR}"
  LDFLAGS+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
  LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
  LDFLAGS+=" -X ${pkg}.buildDate=${BUILD_DATE}"
done

OUT="$WORK/out"
mkdir -p "$OUT"
log "building ${K8S_BINARIES[*]} v${K8S_VERSION} (first time: several minutes)"
(cd "$KMOD" && go build -trimpath -ldflags "$LDFLAGS" -o "$OUT/" \
  "${K8S_BINARIES[@]/#/k8s.io/kubernetes/cmd/}") >&2

# --- etcd --------------------------------------------------------------------
if [[ "$APISERVER_ONLY" != "1" ]]; then
EMOD="$WORK/etcd"
mkdir -p "$EMOD"
cat >"$EMOD/go.mod" <<EOF
module envtest.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
EOF
cat >"$EMOD/main.go" <<'EOF'
// Command etcd runs the etcd server for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
log "building etcd ${ETCD_VERSION}"
(cd "$EMOD" && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" .) >&2
echo "${ETCD_VERSION#v}" >"$OUT/.etcd-version"
fi

# --- install -----------------------------------------------------------------
mkdir -p "$ASSETS_DIR"
INSTALL=("${K8S_BINARIES[@]}")
[[ "$APISERVER_ONLY" == "1" ]] || INSTALL+=(etcd .etcd-version)
for f in "${INSTALL[@]}"; do
  # Copy next to the target, then rename: readers never see a half-written file.
  cp "$OUT/$f" "$ASSETS_DIR/.$f.new"
  mv -f "$ASSETS_DIR/.$f.new" "$ASSETS_DIR/$f"
done

if ! ENVTEST_ETCD_VERSION="$ETCD_VERSION" cached_ok "$ASSETS_DIR"; then
  log "built binaries do not report the expected versions:"
  "$ASSETS_DIR/kube-apiserver" --version >&2 || true
  "$ASSETS_DIR/kubectl" version --client >&2 || true
  "$ASSETS_DIR/etcd" --version >&2 || true
  exit 1
fi

if [[ "$APISERVER_ONLY" == "1" ]]; then
  log "built kube-apiserver v${K8S_VERSION} in $(($(date +%s) - start))s"
else
  log "built ${K8S_BINARIES[*]} v${K8S_VERSION} and etcd ${ETCD_VERSION} in $(($(date +%s) - start))s"
fi
echo "$ASSETS_DIR"
