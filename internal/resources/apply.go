package resources

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// ForApply turns a built object into the document sent with server-side
// apply. A typed Go object serialises a few fields we never mean to set
// (metadata.creationTimestamp: null, an empty status, the status of each
// volumeClaimTemplate); sending them would make us claim ownership of
// them, so they are removed. Everything else in the document is a field we
// own; fields other tools set (annotations, an HPA's replicas) are left to
// them.
func ForApply(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: m}
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		return nil, fmt.Errorf("%T has no apiVersion/kind: builders must set TypeMeta", obj)
	}
	delete(m, "status")
	pruneNulls(m)
	if vcts, ok, _ := unstructured.NestedSlice(m, "spec", "volumeClaimTemplates"); ok {
		for _, v := range vcts {
			if vm, ok := v.(map[string]any); ok {
				delete(vm, "status")
			}
		}
		_ = unstructured.SetNestedSlice(m, vcts, "spec", "volumeClaimTemplates")
	}
	return u, nil
}

// pruneNulls removes null values at any depth (in apply, null would mean
// "remove this field").
func pruneNulls(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range t {
			pruneNulls(e)
		}
	}
}
