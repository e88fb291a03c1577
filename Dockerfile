# One image, three static binaries: /manager (the operator), /receiver (the
# webhook receiver the operator deploys) and /intuned-sim (local Intuned API).
#
#   docker build -t intuned-operator:dev .
#
# Build stage: the Go toolchain, dependencies cached in their own layer.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Copy the module files first so `go mod download` is cached until they change.
COPY go.mod go.sum ./
RUN go mod download

COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/

# CGO_ENABLED=0: fully static binaries for a distroless/static base (the
# SQLite driver is pure Go). TARGETOS/TARGETARCH come from `docker buildx`;
# left empty they default to the build platform.
ENV CGO_ENABLED=0
RUN GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/receiver ./cmd/receiver && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/intuned-sim ./cmd/intuned-sim

# Runtime stage: no shell, no package manager, non-root by default.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /out/manager /out/receiver /out/intuned-sim /
USER 65532:65532

ENTRYPOINT ["/manager"]
