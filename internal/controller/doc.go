// Package controller holds one reconciler per kind of intuned.io/v1alpha1.
//
//   - IntunedJobReconciler keeps a Job on Intuned equal to its IntunedJob:
//     create, update, drift repair, pause/resume, trigger and delete, and
//     reports the Job's state and last JobRun in status.
//   - WebhookReceiverReconciler deploys the receiver (workload, Service,
//     Ingress, token Secret and optional HPA/PDB/NetworkPolicy) with
//     server-side apply and publishes its URL.
//
// The two meet in the link: an IntunedJob whose webhook sink names a
// WebhookReceiver gets that receiver's URL and token written into its Intuned
// sink; the field indexes in indexes.go let each side find the other from
// watch events without polling. RBAC markers live in rbac.go.
package controller
