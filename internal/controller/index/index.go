// Package index holds every field index of the manager's cache. The
// controllers' watches and lists use them to find the objects an event
// concerns without polling or listing everything. cmd/manager registers
// them once, before the controllers start (Register).
//
// Query them with client.MatchingFields{index: value}, plus
// client.InNamespace(ns) for the ones keyed by a name alone: the cache
// scopes namespaced indexes by namespace itself.
package index

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

const (
	// IntunedJobReceiverRef indexes IntunedJobs by
	// spec.sink.webhook.receiverRef.name (the WebhookReceiver's name).
	IntunedJobReceiverRef = "spec.sink.webhook.receiverRef.name"
	// IntunedJobSecretRefs indexes IntunedJobs by "namespace/name" of every
	// Secret they read (credentials, or the manager default; headersFrom;
	// S3; proxyFrom): a change to any of them must reach the job.
	IntunedJobSecretRefs = "intunedjob.secretRefs"
	// IntunedJobCredentialsSecret indexes IntunedJobs by "namespace/name"
	// of their credentials Secret alone (credentialsRef, or the manager
	// default): the Secret their deletion needs.
	IntunedJobCredentialsSecret = "intunedjob.credentialsSecret"
	// IntunedJobClaim indexes IntunedJobs by "workspace/project/jobId" of
	// the Intuned Job they claim (ClaimKey), from status.workspaceId
	// (recorded once the credentials were read; the workspace is only known
	// from them), spec.project and the effective job id. It finds two
	// objects claiming one Job.
	IntunedJobClaim = "intunedjob.claim"
	// WebhookReceiverSecrets indexes WebhookReceivers by the names of the
	// Secrets they read (tokenSecretRef, the PostgreSQL DSN Secret).
	WebhookReceiverSecrets = "webhookreceiver.secretRefs"
)

// Options are what the index functions need to know of the manager.
type Options struct {
	// DefaultCredentials is the manager-wide credentials Secret used by
	// IntunedJobs without spec.credentialsRef (empty Name: none).
	DefaultCredentials intunedv1alpha1.DefaultCredentials
}

// Register adds every index to indexer (the manager's cache). Call it once
// per manager, before the controllers start.
func Register(ctx context.Context, indexer client.FieldIndexer, opts Options) error {
	jobs := []struct {
		name string
		fn   func(*intunedv1alpha1.IntunedJob) []string
	}{
		{IntunedJobReceiverRef, ReceiverRefOf},
		{IntunedJobSecretRefs, func(j *intunedv1alpha1.IntunedJob) []string { return secretRefsOf(j, opts.DefaultCredentials) }},
		{IntunedJobCredentialsSecret, func(j *intunedv1alpha1.IntunedJob) []string {
			if ref, ok := j.CredentialsSecret(opts.DefaultCredentials); ok {
				return []string{ref.String()}
			}
			return nil
		}},
		{IntunedJobClaim, claimOf},
	}
	for _, ix := range jobs {
		fn := ix.fn
		err := indexer.IndexField(ctx, &intunedv1alpha1.IntunedJob{}, ix.name, func(o client.Object) []string {
			if j, ok := o.(*intunedv1alpha1.IntunedJob); ok {
				return fn(j)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index %s: %w", ix.name, err)
		}
	}
	if err := indexer.IndexField(ctx, &intunedv1alpha1.WebhookReceiver{}, WebhookReceiverSecrets, webhookReceiverSecrets); err != nil {
		return fmt.Errorf("index %s: %w", WebhookReceiverSecrets, err)
	}
	return nil
}

// ReceiverRefOf is the name of the WebhookReceiver job's sink references,
// if any.
func ReceiverRefOf(job *intunedv1alpha1.IntunedJob) []string {
	if s := job.Spec.Sink; s != nil && s.Webhook != nil && s.Webhook.ReceiverRef != nil {
		return []string{s.Webhook.ReceiverRef.Name}
	}
	return nil
}

// ClaimKey is the IntunedJobClaim key of a Job on Intuned.
func ClaimKey(workspace, project, jobID string) string {
	return workspace + "/" + project + "/" + jobID
}

func claimOf(job *intunedv1alpha1.IntunedJob) []string {
	if job.Status.WorkspaceID == "" {
		return nil
	}
	return []string{ClaimKey(job.Status.WorkspaceID, job.Spec.Project, job.EffectiveJobID())}
}

func secretRefsOf(job *intunedv1alpha1.IntunedJob, defaultCredentials intunedv1alpha1.DefaultCredentials) []string {
	var out []string
	add := func(name string) { out = append(out, job.Namespace+"/"+name) }
	if ref, ok := job.CredentialsSecret(defaultCredentials); ok {
		out = append(out, ref.String())
	}
	if s := job.Spec.Sink; s != nil {
		if s.Webhook != nil {
			for _, h := range s.Webhook.HeadersFrom {
				add(h.SecretKeyRef.Name)
			}
		}
		if s.S3 != nil {
			add(s.S3.CredentialsSecretRef.Name)
		}
	}
	if p := job.Spec.ProxyFrom; p != nil {
		add(p.Name)
	}
	return out
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
