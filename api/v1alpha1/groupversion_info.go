// Package v1alpha1 contains the API types of the intuned.io/v1alpha1 group:
// IntunedJob (an Intuned Job declared in Kubernetes) and WebhookReceiver (an
// in-cluster endpoint for Intuned's webhook sink).
//
// +kubebuilder:object:generate=true
// +groupName=intuned.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "intuned.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this group-version to a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
