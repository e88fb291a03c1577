// Package cachepolicy is what the manager's informers hold and where its
// client reads from: only what the controllers own or reference.
package cachepolicy

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// The manager runs on shared clusters, where most objects are someone
// else's. Its informers must hold only what the controllers need, or its
// memory grows with the cluster (every Secret of every team, with their
// data) until it is OOM-killed:
//
//   - Secrets are watched as metadata only (builder.OnlyMetadata), so a
//     rotation still wakes the controllers, and their data is read from the
//     API server when needed (ClientOptions). The IntunedJob controller
//     keeps the data of the Secrets its jobs reference, revalidated by the
//     informer's resourceVersion (intunedjob's secretCache): never the
//     cluster's Secrets. The cached metadata loses
//     annotations and managedFields: nothing reads them from the cache, and
//     kubectl's last-applied-configuration annotation repeats the whole
//     Secret.
//   - The children of WebhookReceivers are cached only when they carry our
//     managed-by label (every child does: resources.Labels).
//   - IntunedJobs and WebhookReceivers are ours: cached whole, those of
//     the manager's shard only (sharding.Shard.Selector; the default shard
//     has the objects without the shard label), except an IntunedJob's
//     managedFields (a few hundred bytes to kilobytes per object, a large
//     share of the cache at 10,000 jobs; nothing reads them: the controller
//     writes status with a merge patch). The receivers' children keep
//     theirs (the controller reads which fields it applied:
//     webhookreceiver's managesField); they carry their receiver's shard
//     label and are cached by shard too,
//     except the SQLite data claims: they take the labels of the
//     StatefulSet's volumeClaimTemplate, which is immutable and so never
//     carries the shard label (a receiver moving to another shard must not
//     need a new StatefulSet). Every shard caches them (few, and small).

// ownedLabels selects the children the WebhookReceiver controller applies.
var ownedLabels = labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy})

// CacheOptions is the manager's cache: only what the controllers own or
// reference, in the given namespaces (none: the whole cluster), of the
// given shard.
func CacheOptions(namespaces []string, shard sharding.Shard) cache.Options {
	owned := cache.ByObject{Label: shard.Owned(ownedLabels)}
	ours := cache.ByObject{Label: shard.Selector()}
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&intunedv1alpha1.IntunedJob{}:            {Label: ours.Label, Transform: cache.TransformStripManagedFields()},
			&intunedv1alpha1.WebhookReceiver{}:       ours,
			&corev1.Secret{}:                         {Transform: secretMetadataOnly},
			&corev1.ServiceAccount{}:                 owned,
			&corev1.Service{}:                        owned,
			&appsv1.Deployment{}:                     owned,
			&appsv1.StatefulSet{}:                    owned,
			&networkingv1.Ingress{}:                  owned,
			&networkingv1.NetworkPolicy{}:            owned,
			&autoscalingv2.HorizontalPodAutoscaler{}: owned,
			&policyv1.PodDisruptionBudget{}:          owned,
			// SQLite data claims carry the labels of the StatefulSet's
			// volumeClaimTemplate, ours included.
			&corev1.PersistentVolumeClaim{}: {Label: ownedLabels},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = make(map[string]cache.Config, len(namespaces))
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions make the manager's client read Secrets from the API server
// (the cache has their metadata only) and write as the shard's field
// manager.
func ClientOptions(shard sharding.Shard) client.Options {
	return client.Options{
		Cache:      &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		FieldOwner: shard.FieldOwner(),
	}
}

// secretMetadataOnly drops what no controller reads from a cached Secret's
// metadata: annotations (kubectl's last-applied-configuration holds the
// whole Secret, data included) and managedFields.
func secretMetadataOnly(in any) (any, error) {
	if obj, err := meta.Accessor(in); err == nil {
		obj.SetAnnotations(nil)
		obj.SetManagedFields(nil)
	}
	return in, nil
}
