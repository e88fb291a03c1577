// Package crd tests the generated CustomResourceDefinitions: offline schema
// and CEL validation, freshness of generated files, and (with envtest
// binaries) installing them into a real kube-apiserver and checking samples,
// defaults and the rejection of invalid objects.
package crd
