// Package controller is the manager's control logic, a package per role:
//
//   - intunedjob: keeps a Job on Intuned equal to its IntunedJob (create,
//     update, drift repair, pause/resume, trigger, delete) and reports the
//     Job's state and last JobRun in status.
//   - webhookreceiver: deploys the receiver (workload, Service, Ingress,
//     token Secret and optional HPA/PDB/NetworkPolicy) with server-side
//     apply and publishes its URL.
//   - guard: finalizers that make what an IntunedJob's deletion needs (its
//     credentials Secret, the manager's RoleBinding in a namespaced install)
//     outlive it.
//
// and the shared packages they build on, which never import a kind:
//
//   - report: failures, kstatus conditions, the one status patch per
//     reconcile, Events, and when to retry after a failure;
//   - index: every field index, registered once by cmd/manager;
//   - cachepolicy: what the manager's informers hold;
//   - controllertest: the envtest suites' shared setup (tests only).
//
// The kinds meet in the link: an IntunedJob whose webhook sink names a
// WebhookReceiver gets that receiver's URL and token written into its
// Intuned sink; the field indexes let each side find the other from watch
// events without polling. RBAC markers live in rbac.go.
package controller
