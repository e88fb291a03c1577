package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// InstallAdmissionPolicies creates config/admission's policies as they are
// in the source tree (no kustomize name prefix) and waits until they apply.
func InstallAdmissionPolicies(ctx context.Context, c client.Client, namespace string) error {
	objs, err := readManifests(filepath.Join(RepoRoot(), "config", "admission", "intunedjob_finalizer_policy.yaml"))
	if err != nil {
		return err
	}
	return CreateAdmissionPolicies(ctx, c, objs, namespace)
}

// CreateAdmissionPolicies creates objs (the IntunedJob finalizer policy and
// its binding), unless they exist, and waits until the API server enforces
// them (WaitForAdmissionPolicies).
func CreateAdmissionPolicies(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, namespace string) error {
	for _, o := range objs {
		o := o.DeepCopy()
		o.SetResourceVersion("")
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return WaitForAdmissionPolicies(ctx, c, namespace)
}

// WaitForAdmissionPolicies waits until the API server enforces the
// IntunedJob finalizer policy, which it loads asynchronously: an IntunedJob
// created in namespace with dry run must come back with the finalizer.
func WaitForAdmissionPolicies(ctx context.Context, c client.Client, namespace string) error {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		probe := &intunedv1alpha1.IntunedJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("admission-probe-%d", i)},
			Spec: intunedv1alpha1.IntunedJobSpec{
				Project: "probe",
				Payload: []intunedv1alpha1.JobPayload{{APIName: "probe"}},
			},
		}
		// Dry run: nothing is stored, so no finalizer has to be removed. Right
		// after the CRDs are installed the API server may still refuse
		// (their schema is published asynchronously): retry.
		err := c.Create(ctx, probe, client.DryRunAll)
		if err == nil && controllerutil.ContainsFinalizer(probe, intunedv1alpha1.Finalizer) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("probe the IntunedJob finalizer policy: %w", err)
			}
			return errors.New("the IntunedJob finalizer policy did not take effect within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readManifests decodes every YAML document in file.
func readManifests(file string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	objs, err := DecodeManifests(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return objs, nil
}

// DecodeManifests decodes a multi-document YAML (or JSON) stream, such as
// kustomize output, skipping empty documents.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
