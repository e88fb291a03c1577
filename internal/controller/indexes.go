package controller

import (
	"context"
	"fmt"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Field indexes shared by the controllers. Query them with
// client.InNamespace(ns) plus client.MatchingFields{index: name}: the cache
// scopes namespaced indexes by namespace itself.
const (
	// IndexIntunedJobReceiverRef indexes IntunedJobs by
	// spec.sink.webhook.receiverRef.name (the WebhookReceiver's name).
	IndexIntunedJobReceiverRef = "spec.sink.webhook.receiverRef.name"
	// IndexWebhookReceiverSecrets indexes WebhookReceivers by the names of
	// the Secrets they read (tokenSecretRef, the PostgreSQL DSN Secret).
	IndexWebhookReceiverSecrets = "webhookreceiver.secretRefs"
)

var (
	indexesMu sync.Mutex
	// indexed remembers the field indexers (one per manager) that already
	// have the shared indexes: registering one twice is an error, and both
	// controllers call SetupIndexes.
	indexed = map[client.FieldIndexer]bool{}
)

// SetupIndexes registers the shared field indexes with the manager's cache.
// It is safe to call more than once for the same manager (each controller's
// SetupWithManager calls it, and cmd/manager may too).
func SetupIndexes(ctx context.Context, mgr manager.Manager) error {
	indexesMu.Lock()
	defer indexesMu.Unlock()
	idx := mgr.GetFieldIndexer()
	if indexed[idx] {
		return nil
	}
	if err := idx.IndexField(ctx, &intunedv1alpha1.IntunedJob{}, IndexIntunedJobReceiverRef, intunedJobReceiverRef); err != nil {
		return fmt.Errorf("index %s: %w", IndexIntunedJobReceiverRef, err)
	}
	if err := idx.IndexField(ctx, &intunedv1alpha1.WebhookReceiver{}, IndexWebhookReceiverSecrets, webhookReceiverSecrets); err != nil {
		return fmt.Errorf("index %s: %w", IndexWebhookReceiverSecrets, err)
	}
	indexed[idx] = true
	return nil
}

func intunedJobReceiverRef(o client.Object) []string {
	job, ok := o.(*intunedv1alpha1.IntunedJob)
	if !ok {
		return nil
	}
	if s := job.Spec.Sink; s != nil && s.Webhook != nil && s.Webhook.ReceiverRef != nil {
		return []string{s.Webhook.ReceiverRef.Name}
	}
	return nil
}

func webhookReceiverSecrets(o client.Object) []string {
	whr, ok := o.(*intunedv1alpha1.WebhookReceiver)
	if !ok {
		return nil
	}
	var names []string
	if ref := whr.Spec.TokenSecretRef; ref != nil {
		names = append(names, ref.Name)
	}
	if st := whr.Spec.Storage; st != nil && st.Postgres != nil {
		names = append(names, st.Postgres.DSNSecretRef.Name)
	}
	return names
}
