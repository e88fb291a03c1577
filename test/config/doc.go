// Package config tests the kustomize manifests under config/: that
// config/default renders (with the expected names, namespace and hardened
// manager Deployment) and that every rendered object is accepted by a real
// API server (envtest) with server-side dry-run.
package config
