# intuned-operator Makefile. `make help` lists the targets.
#
# Tools run with `go run <module>@<pinned version>` from the Go module cache;
# nothing is downloaded by scripts.

# Image of the manager (and receiver) built by docker-build and set by deploy/build-installer.
IMG ?= ghcr.io/intuned-operator/intuned-operator:latest
# Container tool for docker-build.
CONTAINER_TOOL ?= docker

CONTROLLER_TOOLS_VERSION ?= v0.23.0
# kustomize v5.8.3 needs go >= 1.27; v5.8.2 is the newest that builds with go 1.26.
KUSTOMIZE_VERSION ?= v5.8.2

CONTROLLER_GEN ?= go run sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= go run sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
KUBECTL ?= kubectl

# Packages whose markers generate code and manifests.
GEN_PATHS = ./api/...;./internal/controller/...

# Shell with pipefail so failing steps in pipelines fail the target.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs (config/crd/bases) and the manager ClusterRole (config/rbac/role.yaml) from markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="$(GEN_PATHS)" \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate DeepCopy methods (api/v1alpha1/zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w $$(git ls-files '*.go' | grep -v '^vendor/')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest
envtest: ## Build (once, cached in bin/k8s/) the kube-apiserver, etcd and kubectl envtest uses; prints the directory.
	hack/setup-envtest.sh

# The oldest Kubernetes the install supports: test/config applies it to an API
# server of this version too (keep in step with OldestSupportedKubernetes there).
OLDEST_K8S_VERSION ?= 1.31.14

.PHONY: test
test: ## Run every test: a real API server, PostgreSQL and (as root on Linux) a real single-node cluster, set up first; test/cluster starts as soon as its cluster can, and runs beside the other packages.
	@if [ "$$(id -u)" = 0 ] || [ "$${CI:-}" = true ]; then \
		hack/setup-kcluster.sh >/dev/null; \
	else \
		echo "not root: test/cluster (the real single-node cluster) will skip; see docs/e2e.md"; \
	fi; \
	assets="$$(hack/setup-envtest.sh)"; \
	export KUBEBUILDER_ASSETS="$$assets"; \
	hack/ensure-postgres.sh; \
	clusterlog="$$(mktemp)"; rest=0; clusterrc=0; \
	go test ./test/cluster -v -timeout 45m $(TEST_ARGS) >"$$clusterlog" 2>&1 & cluster=$$!; \
	ENVTEST_K8S_VERSION=$(OLDEST_K8S_VERSION) ENVTEST_APISERVER_ONLY=1 hack/setup-envtest.sh >/dev/null; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	go test $$(go list ./... | grep -v '/test/cluster$$') $(TEST_ARGS) || rest=$$?; \
	wait $$cluster || clusterrc=$$?; \
	echo "--- test/cluster (ran beside the packages above; each test's time, the whole log when one failed)"; \
	if [ $$clusterrc = 0 ]; then grep -E '^(--- |ok |test/cluster: |kcluster: up)' "$$clusterlog"; else cat "$$clusterlog"; fi; \
	rm -f "$$clusterlog"; \
	[ $$rest = 0 ] && [ $$clusterrc = 0 ]

.PHONY: test-cluster
test-cluster: ## Run only the real-cluster tests (KCLUSTER_KEEP=1 leaves the cluster up to look around).
	hack/setup-kcluster.sh >/dev/null
	go test ./test/cluster -v -timeout 45m $(TEST_ARGS)

.PHONY: cluster-up
cluster-up: ## Bring the local single-node cluster up (prints the KUBECONFIG to export).
	hack/setup-kcluster.sh >/dev/null
	go run ./hack/kcluster up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it made.
	go run ./hack/kcluster down -purge

.PHONY: verify-generated
verify-generated: ## Fail if generated code or manifests are stale (also checked by go test ./test/crd).
	go test ./test/crd -run 'TestGeneratedFilesUpToDate' -count=1

##@ Build

.PHONY: build
build: ## Build the manager, receiver and intuned-sim binaries into bin/.
	go build -o bin/ ./cmd/manager ./cmd/receiver ./cmd/intuned-sim

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig (no leader election).
	go run ./cmd/manager --leader-elect=false

# Platforms of `make image` and `make release` (each one's binaries cross-compiled, CGO_ENABLED=0).
PLATFORMS ?= linux/amd64,linux/arm64
# Repository a release's image is named (and its manifests pinned) in.
RELEASE_REPO ?= ghcr.io/intuned-operator/intuned-operator

.PHONY: image
image: ## Build the image $(IMG) for $(PLATFORMS) without Docker: dist/image/ holds its OCI archive, index digest and SBOM (docs/release.md).
	go run ./hack/release -image $(IMG) -platforms $(PLATFORMS)

.PHONY: release
release: ## Write dist/release/$(VERSION)/ without Docker: OCI image archive ($(PLATFORMS)) and digest, install manifests pinned by digest, SBOM, SHA256SUMS (make release VERSION=v1.2.3; docs/release.md).
	@[ -n "$(VERSION)" ] || { echo "usage: make release VERSION=vX.Y.Z"; exit 2; }
	go run ./hack/release -version $(VERSION) -repo $(RELEASE_REPO) -platforms $(PLATFORMS)

.PHONY: docker-build
docker-build: ## Build the container image $(IMG) with Docker (the same image as `make image`; a test keeps the Dockerfile and the library build in step).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image $(IMG).
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: build-installer
build-installer: manifests generate installer ## Regenerate, then write dist/install.yaml: CRDs, RBAC and the manager with image $(IMG).

# Where `installer` writes (the real-cluster tests render their own copy):
# the install, the optional admission policy for Kubernetes 1.36+, and the
# namespaced variants of both (config/namespaced, config/admission-namespaced,
# docs/security.md).
INSTALLER ?= dist/install.yaml
ADMISSION_INSTALLER ?= $(dir $(INSTALLER))admission-policy.yaml
NAMESPACED_INSTALLER ?= $(dir $(INSTALLER))install-namespaced.yaml
ADMISSION_NAMESPACED_INSTALLER ?= $(dir $(INSTALLER))admission-policy-namespaced.yaml

.PHONY: installer
installer: ## Write $(INSTALLER) (and the optional admission policy, and the namespaced install) from the committed config/ with image $(IMG).
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	cp -r config "$$tmp/"; \
	(cd "$$tmp/config/manager" && $(KUSTOMIZE) edit set image controller=$(IMG)); \
	mkdir -p "$$(dirname "$(INSTALLER)")"; \
	$(KUSTOMIZE) build "$$tmp/config/default" > "$(INSTALLER)"; \
	$(KUSTOMIZE) build "$$tmp/config/admission" > "$(ADMISSION_INSTALLER)"; \
	$(KUSTOMIZE) build "$$tmp/config/namespaced" > "$(NAMESPACED_INSTALLER)"; \
	$(KUSTOMIZE) build "$$tmp/config/admission-namespaced" > "$(ADMISSION_NAMESPACED_INSTALLER)"; \
	echo "wrote $(INSTALLER), $(ADMISSION_INSTALLER) (optional, Kubernetes 1.36+), $(NAMESPACED_INSTALLER) (instead of $(INSTALLER): watches only the namespaces in config/namespaced) and $(ADMISSION_NAMESPACED_INSTALLER) (its admission policy)"

# Chart version for `make chart` (SemVer, required there); APP_VERSION (the
# default image tag) defaults to it; DIGEST (sha256:...) pins the image.
VERSION ?=
APP_VERSION ?= $(VERSION)
DIGEST ?=
CHART_DIR ?= dist/chart

.PHONY: chart
chart: ## Package the Helm chart into $(CHART_DIR)/intuned-operator-$(VERSION).tgz (VERSION=1.2.3 [APP_VERSION=...] [DIGEST=sha256:...]; docs/helm.md).
	@test -n "$(VERSION)" || { echo "make chart: set VERSION (e.g. make chart VERSION=0.1.0)"; exit 2; }
	go run ./hack/chart package -version "$(VERSION)" -app-version "$(APP_VERSION)" -digest "$(DIGEST)" -out "$(CHART_DIR)"

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs (and every IntunedJob/WebhookReceiver) from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: build-installer ## Deploy CRDs, RBAC and the manager (image $(IMG)) to the cluster.
	$(KUBECTL) apply --server-side -f dist/install.yaml

.PHONY: undeploy
undeploy: build-installer ## Remove the operator from the cluster.
	$(KUBECTL) delete --ignore-not-found -f dist/install.yaml

##@ Benchmarks and demo

.PHONY: bench-receiver
bench-receiver: ## Benchmark the webhook receiver (saturation with wrk + fixed-rate latency, SQLite vs PostgreSQL; BENCH_RECEIVER_ARGS=-load=go skips wrk; store sizes: BENCH_RECEIVER_ARGS="-random-run-ids -rate 1000 -cases sqlite,sqlite@1M,sqlite@1M+prune", see internal/receiver/README.md "Store size").
	hack/ensure-postgres.sh
	hack/bench-receiver/ensure-wrk.sh
	go run ./hack/bench-receiver $(BENCH_RECEIVER_ARGS)

.PHONY: bench-receiver-ingress
bench-receiver-ingress: ## The receiver (SQLite) against a bare handler, both behind the real node's Traefik Ingress and directly on their Pods, in one run (needs root; brings the test cluster up and down, ~3 min; see internal/receiver/README.md "Through the Ingress").
	hack/setup-kcluster.sh >/dev/null
	hack/bench-receiver/ensure-wrk.sh
	go run ./hack/bench-receiver -ingress $(BENCH_RECEIVER_ARGS)

# IntunedJobs in bench-operator's main run (docs/scale.md).
BENCH_JOBS ?= 1000

.PHONY: bench-operator
bench-operator: ## IntunedJob controller benchmark (~8 min at BENCH_JOBS=1000; BENCH_OPERATOR_ARGS=-limit-jobs=0 skips the real 20/min run).
	@assets="$$(hack/setup-envtest.sh)"; KUBEBUILDER_ASSETS="$$assets" go run ./hack/bench-operator -jobs=$(BENCH_JOBS) $(BENCH_OPERATOR_ARGS)

# Size of the results file bench-backfill streams (1GB, 200MB, 64MiB, ...).
BACKFILL_BYTES ?= 1GB

.PHONY: bench-backfill
bench-backfill: ## Backfill throughput and peak RSS: the manager's results-file pass into a real SQLite receiver, 1 GB file, CPU profile (~3 min; BACKFILL_BYTES=200MB for less; needs ~3x that free in TMPDIR).
	@df -h "$${TMPDIR:-/tmp}" | tail -n 1 | awk '{print "free in " $$6 ": " $$4}'
	@prof="$$(mktemp -d)"; trap 'rm -rf "$$prof"' EXIT; \
	BACKFILL_BYTES=$(BACKFILL_BYTES) BACKFILL_CPUPROFILE="$$prof/cpu.out" \
		go test ./internal/controller/intunedjob -run '^$$' -bench '^BenchmarkBackfillResultsFile$$' -benchtime 1x -timeout 60m $(BENCH_BACKFILL_ARGS); \
	echo; echo "manager-side CPU profile of the two backfill rows (go tool pprof -top):"; \
	go tool pprof -top -nodecount 20 "$$prof/cpu.out" 2>/dev/null | sed -n '5,$$p'

.PHONY: demo
demo: ## Intuned's webhook quickstart end to end on this machine (local API server, intuned-sim, the operator, its receiver). Ctrl-C stops; DEMO_ARGS=-exit-when-done exits after the flow.
	@assets="$$(hack/setup-envtest.sh)"; KUBEBUILDER_ASSETS="$$assets" go run ./hack/demo $(DEMO_ARGS)
