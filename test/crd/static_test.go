package crd

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root relative to this package.
const repoRoot = "../.."

// TestCRDsValidOffline runs the API server's own CRD validation (schema
// structure, CEL compilation and CEL cost limits) on the generated CRDs, so a
// broken marker fails fast even without envtest binaries.
func TestCRDsValidOffline(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "config/crd/bases/*.yaml"))
	if err != nil || len(files) != 2 {
		t.Fatalf("want 2 CRD files, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v1crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict(raw, &v1crd); err != nil {
				t.Fatalf("decode: %v", err)
			}
			var crd apiextensions.CustomResourceDefinition
			if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil); err != nil {
				t.Fatalf("convert: %v", err)
			}
			// A freshly created CRD gets its stored version from the server.
			crd.Status.StoredVersions = []string{"v1alpha1"}
			for _, e := range validation.ValidateCustomResourceDefinition(context.Background(), &crd) {
				t.Errorf("invalid CRD: %v", e)
			}
		})
	}
}
