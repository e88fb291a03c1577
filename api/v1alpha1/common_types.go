package v1alpha1

// Well-known annotations, labels and finalizers.
const (
	// AnnotationTrigger on an IntunedJob: setting it to any new value triggers
	// exactly one JobRun; the handled value is recorded in
	// status.lastHandledTrigger.
	AnnotationTrigger = "intuned.io/trigger"
	// AnnotationBackfill on an IntunedJob: setting it to a JobRun id
	// backfills that JobRun now (its missing results are fetched from
	// Intuned's results file and stored in the WebhookReceiver), whatever
	// spec.sink.webhook.backfill says and without waiting for Intuned's
	// retry window; the handled value is recorded in
	// status.lastHandledBackfill. To ask again for the same JobRun, append
	// @ and anything new ("<jobRunId>@2").
	AnnotationBackfill = "intuned.io/backfill"
	// Finalizer guards IntunedJob deletion so the Intuned Job can be deleted
	// (deletionPolicy Delete) or released (Orphan) first.
	Finalizer = "intuned.io/finalizer"
	// FinalizerCredentialsInUse keeps a credentials Secret while an
	// IntunedJob still needs it to delete its Job on Intuned.
	FinalizerCredentialsInUse = "intuned.io/credentials-in-use"
	// FinalizerManagerAccess keeps the RoleBinding that grants the manager
	// its rights in a namespace (namespaced install) while IntunedJobs there
	// still need the manager to delete their Jobs on Intuned.
	FinalizerManagerAccess = "intuned.io/manager-access"
	// LabelShard on an IntunedJob or WebhookReceiver names the manager
	// shard that reconciles it (the manager started with --shard=<value>);
	// objects without it belong to the default shard (the manager without
	// --shard). The WebhookReceiver controller copies it onto the
	// receiver's children. See docs/sharding.md.
	LabelShard = "sharding.intuned.io/key"
)

// Keys the operator reads from a credentials Secret (spec.credentialsRef).
const (
	// CredentialsKeyWorkspaceID holds the Intuned workspace id (a UUID).
	CredentialsKeyWorkspaceID = "workspaceId"
	// CredentialsKeyAPIKey holds the Intuned API key (sent as x-api-key).
	CredentialsKeyAPIKey = "apiKey"
	// CredentialsKeyBaseURL optionally overrides the Intuned API base URL
	// (default https://app.intuned.io/api/v1/workspace), e.g. for intuned-sim.
	CredentialsKeyBaseURL = "baseURL"
)

// Keys the operator reads from an S3 credentials Secret
// (spec.sink.s3.credentialsSecretRef).
const (
	S3KeyAccessKeyID     = "accessKeyId"
	S3KeySecretAccessKey = "secretAccessKey"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the referenced object in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// SecretKeyRef selects one key of a Secret in the same namespace.
type SecretKeyRef struct {
	// Name of the Secret in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// Key inside the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}
