package v1alpha1

// This file names every condition type and reason a user can see on an
// IntunedJob or a WebhookReceiver: they are part of the API (alerts,
// `kubectl wait --for=condition=...`, health checks), so they live here and
// nowhere else.

// Condition types shared by both kinds, read the way kstatus
// (sigs.k8s.io/cli-utils) and the Flux/Argo CD health checks read them:
// Ready=True is Current, Reconciling=True or Ready=False is InProgress,
// Stalled=True is Failed. Every condition carries observedGeneration.
const (
	// ConditionReady is True when the object does what its spec asks: for an
	// IntunedJob the Job is synced and in the asked state (ACTIVE/PAUSED)
	// with a usable sink; for a WebhookReceiver the workload is available
	// and status.url is known.
	ConditionReady = "Ready"
	// ConditionSynced is True when Intuned holds the spec: the last
	// reconcile reached the Intuned API and the Job there matches the spec
	// (IntunedJob only). It can be True while Ready is False (the Job is
	// synced, but pausing or reading its JobRuns failed).
	ConditionSynced = "Synced"
	// ConditionReconciling is True while the operator is working towards
	// the spec or waiting for something it expects to change.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when reconciliation hit an error that retrying
	// cannot fix without a change by a human (bad spec, bad credentials,
	// conflict). It is set False once the cause is gone.
	ConditionStalled = "Stalled"
)

// Condition reasons. They are CamelCase, stable and meant for automation
// (kubectl wait, alerts); the human explanation goes in the message.
const (
	// ReasonProgressing: work is under way (a create whose answer is not
	// known yet).
	ReasonProgressing = "Progressing"
	// ReasonSynced: the Intuned Job matches the spec.
	ReasonSynced = "Synced"
	// ReasonAvailable: the WebhookReceiver workload is available and its URL known.
	ReasonAvailable = "Available"
	// ReasonSyncFailed: a transient error talking to Intuned; it is retried.
	ReasonSyncFailed = "SyncFailed"
	// ReasonRateLimited: Intuned asked us to slow down (429); retried after Retry-After.
	ReasonRateLimited = "RateLimited"
	// ReasonCredentialsNotFound: the credentials Secret (or a required key in it) is missing.
	ReasonCredentialsNotFound = "CredentialsNotFound"
	// ReasonDefaultCredentialsNotAllowed: the job has no spec.credentialsRef and the manager's
	// default credentials Secret is not allowed in its namespace (--default-credentials-namespaces).
	ReasonDefaultCredentialsNotAllowed = "DefaultCredentialsNotAllowed"
	// ReasonCredentialsInvalid: Intuned rejected the API key (401).
	ReasonCredentialsInvalid = "CredentialsInvalid"
	// ReasonSecretNotFound: a Secret referenced by the spec (headersFrom,
	// s3 credentials, proxyFrom, token, dsn) or one of its keys is missing.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonInvalidSpec: Intuned rejected the Job (400) or the spec cannot be
	// translated into a Job; fix the spec.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonProjectNotFound: the Intuned project does not exist in the workspace (404).
	ReasonProjectNotFound = "ProjectNotFound"
	// ReasonAlreadyExists: a Job with this id already exists on Intuned and
	// spec.adopt is false, so the operator will not take it over.
	ReasonAlreadyExists = "AlreadyExists"
	// ReasonConflict: another IntunedJob already manages the same
	// (workspace, project, job id); this one changes nothing.
	ReasonConflict = "Conflict"
	// ReasonReceiverNotFound: sink.webhook.receiverRef names a WebhookReceiver
	// that does not exist in the namespace.
	ReasonReceiverNotFound = "ReceiverNotFound"
	// ReasonReceiverInOtherShard: sink.webhook.receiverRef names a
	// WebhookReceiver that another manager shard reconciles (its
	// sharding.intuned.io/key label differs from the IntunedJob's); a job
	// and its receiver must be in one shard.
	ReasonReceiverInOtherShard = "ReceiverInOtherShard"
	// ReasonReceiverNotReady: the referenced WebhookReceiver has no URL yet or
	// is not Ready; the Job is not pushed to Intuned with an unreachable URL.
	ReasonReceiverNotReady = "ReceiverNotReady"
	// ReasonServerNormalises: Intuned keeps rewriting fields of the Job
	// (status.lastApplied.normalisedFields) however often they are written;
	// the operator stops writing until the spec or the Job on Intuned
	// changes. Change the spec to the value Intuned holds.
	ReasonServerNormalises = "ServerNormalises"
	// ReasonManagedInCode: the Job is defined in code (Intuned's jobs-as-code
	// files); Intuned refuses to update or delete it through the API, so
	// the operator only observes, pauses/resumes and triggers it.
	ReasonManagedInCode = "ManagedInCode"
	// ReasonSuspended: spec.suspend is true; no API calls are made.
	ReasonSuspended = "Suspended"
	// ReasonDeletionBlocked: the object is being deleted and its Job is
	// still on Intuned: the credentials are missing or rejected (a human
	// must act), or deleting failed (it is retried). The message says how
	// to finish, or to force it with deletionPolicy: Orphan.
	ReasonDeletionBlocked = "DeletionBlocked"
	// ReasonWorkloadNotReady: the receiver Deployment/StatefulSet has no
	// available replica yet.
	ReasonWorkloadNotReady = "WorkloadNotReady"
	// ReasonURLUnknown: the receiver has neither an Ingress host nor an
	// externalURL from which a public URL can be derived yet.
	ReasonURLUnknown = "URLUnknown"
	// ReasonReconcileError: an unexpected error while reconciling children.
	ReasonReconcileError = "ReconcileError"
	// ReasonResourceConflict: an object the WebhookReceiver would own (the
	// token Secret, Service, workload, ...) already exists and belongs to
	// someone else; the operator does not take it over.
	ReasonResourceConflict = "ResourceConflict"
)

// ConditionVolumeNearlyFull reports, for a SQLite WebhookReceiver, whether
// its volume is nearly full, as the receiver's /metrics says
// (receiver_store_volume_near_full, _full and the free bytes). True means:
// grow spec.storage.sqlite.size before the receiver refuses deliveries (503
// store_full; Intuned retries them for an hour). It does not change Ready:
// the receiver still serves.
const ConditionVolumeNearlyFull = "VolumeNearlyFull"

// Reasons of ConditionVolumeNearlyFull.
const (
	// ReasonVolumeSpaceAvailable: the volume has room (False).
	ReasonVolumeSpaceAvailable = "SpaceAvailable"
	// ReasonVolumeNearlyFull: grow the volume soon (True).
	ReasonVolumeNearlyFull = "NearlyFull"
	// ReasonVolumeFull: the receiver refuses deliveries until the volume
	// grows (True).
	ReasonVolumeFull = "Full"
	// ReasonVolumeMetricsUnreadable: the receiver's /metrics could not be
	// read (Unknown).
	ReasonVolumeMetricsUnreadable = "MetricsUnreadable"
)

// ConditionVolumeResizing reports, for a SQLite WebhookReceiver, whether
// its PersistentVolumeClaim is being expanded to spec.storage.sqlite.size.
// True while the claim's capacity is below its request (the storage driver
// or the kubelet is still growing it). False when the volume has the
// requested size, or when it cannot grow (the reason says why). Like
// VolumeNearlyFull it does not change Ready.
const ConditionVolumeResizing = "VolumeResizing"

// Reasons of ConditionVolumeResizing.
const (
	// ReasonVolumeAtRequestedSize: the claim's capacity reached the size
	// asked for (False).
	ReasonVolumeAtRequestedSize = "AtRequestedSize"
	// ReasonVolumeResizing: the claim was raised and its capacity is still
	// smaller; the message carries what the claim reports (True).
	ReasonVolumeResizing = "Resizing"
	// ReasonVolumeExpansionNotAllowed: the claim's StorageClass does not set
	// allowVolumeExpansion: true (or the claim has no class), so a larger
	// spec.storage.sqlite.size cannot reach the volume (False).
	ReasonVolumeExpansionNotAllowed = "ExpansionNotAllowed"
	// ReasonVolumeClaimNotBound: the claim is not bound to a volume yet; it
	// is expanded once it is (Unknown).
	ReasonVolumeClaimNotBound = "ClaimNotBound"
)

// ConditionDataComplete reports whether the results of the job's recent
// JobRuns reached its WebhookReceiver (status.deliveries). It is not part of
// Ready: a data gap is not a reconcile failure. True: every result that
// should have reached the sink is stored. False: a gap, after Intuned's
// retry window for the JobRun's last result has passed. Unknown: still
// within that window, backfilling, or not measurable (see the reason).
const ConditionDataComplete = "DataComplete"

// Reasons of ConditionDataComplete.
const (
	// ReasonDeliveriesComplete: every expected result is stored (True).
	ReasonDeliveriesComplete = "Complete"
	// ReasonBackfilled: every expected result is stored, some of them
	// fetched from Intuned's results file (True).
	ReasonBackfilled = "Backfilled"
	// ReasonDeliveriesPending: a JobRun is running, or its results may
	// still arrive through Intuned's retries (Unknown).
	ReasonDeliveriesPending = "Pending"
	// ReasonBackfilling: missing results are being fetched from Intuned's
	// results file and stored (Unknown).
	ReasonBackfilling = "Backfilling"
	// ReasonDeliveryGap: results are missing after Intuned's retry window
	// and backfill is off (spec.sink.webhook.backfill: Manual) (False).
	ReasonDeliveryGap = "DeliveryGap"
	// ReasonBackfillFailed: results are missing and backfill could not
	// store them all; the message names the cause (an unknown results
	// format, a results line that is not a result) (False).
	ReasonBackfillFailed = "BackfillFailed"
	// ReasonReceiverUnreachable: the receiver's summary could not be read
	// (Unknown).
	ReasonReceiverUnreachable = "ReceiverUnreachable"
	// ReasonNoJobRun: the Job has not run yet (Unknown).
	ReasonNoJobRun = "NoJobRun"
	// ReasonNotApplicable: accounting needs a webhook sink with receiverRef
	// (Unknown).
	ReasonNotApplicable = "NotApplicable"
)

// ConditionFresh reports whether a scheduled job keeps producing data: its
// runs start on schedule and deliver something to its WebhookReceiver.
// False with ScheduleMissed or NothingDelivered says what stopped.
const ConditionFresh = "Fresh"

// Reasons of ConditionFresh.
const (
	// ReasonOnSchedule: the last scheduled run started on time and, with a
	// receiverRef, the last finished JobRun delivered results (True).
	ReasonOnSchedule = "OnSchedule"
	// ReasonScheduleMissed: a scheduled run time passed by more than the
	// grace period without a new JobRun (False).
	ReasonScheduleMissed = "ScheduleMissed"
	// ReasonNothingDelivered: the last finished JobRun stored nothing in a
	// Ready receiver (False).
	ReasonNothingDelivered = "NothingDelivered"
	// ReasonNotScheduled: the job has no schedule or is paused (Unknown).
	ReasonNotScheduled = "NotScheduled"
)
