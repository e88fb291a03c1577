package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Defaults of the WebhookReceiver API, also used by the controller when a
// field is absent (e.g. objects created before a default existed).
const (
	// DefaultTokenSecretKey is the key of the auth token in tokenSecretRef.
	DefaultTokenSecretKey = "token"
	// DefaultIngressPath is the HTTP path Intuned POSTs to.
	DefaultIngressPath = "/webhooks/intuned"
	// DefaultSQLiteSize is the size of the SQLite volume.
	DefaultSQLiteSize = "1Gi"
)

// The controller-owned token Secret (status.tokenSecretName) that receiver
// Pods mount. IntunedJobs with a receiverRef read the current token from it.
const (
	// TokenSecretKeyToken holds the current ingest token.
	TokenSecretKeyToken = "token"
	// TokenSecretKeyPreviousToken holds the previous ingest token while a
	// rotation is in progress; the receiver accepts both.
	TokenSecretKeyPreviousToken = "previous-token"
	// TokenSecretKeyReadToken holds the token of the receiver's read API
	// (GET /v1/deliveries), generated once.
	TokenSecretKeyReadToken = "read-token"
	// AnnotationRotateToken on a WebhookReceiver without tokenSecretRef:
	// setting it to any new value generates a new token (the old one stays
	// accepted until every referencing IntunedJob carries the new one).
	AnnotationRotateToken = "intuned.io/rotate-token"
)

// +kubebuilder:validation:XValidation:rule="!has(self.retention) || !has(self.retention.maxSize) || !has(self.storage) || !has(self.storage.postgres)",message="retention.maxSize applies to sqlite storage only: PostgreSQL does not give deleted space back until it is vacuumed, so its size cannot bound what is kept; bound a postgres receiver by retention.maxAge"
// +kubebuilder:validation:XValidation:rule="!has(self.retention) || !has(self.retention.maxSize) || !has(self.storage) || !has(self.storage.sqlite) || !has(self.storage.sqlite.size) || quantity(string(self.retention.maxSize)).isLessThan(quantity(string(self.storage.sqlite.size)))",message="retention.maxSize must be less than storage.sqlite.size: the volume also holds the write-ahead log, a 16Mi reserve and the last 2h of deliveries, which are never pruned"
// WebhookReceiverSpec declares an in-cluster endpoint for Intuned's webhook
// sink: receiver Pods that authenticate each delivery with a bearer token,
// store it durably (SQLite or PostgreSQL) and de-duplicate it by run id.
// IntunedJobs point at it with spec.sink.webhook.receiverRef.
// +kubebuilder:validation:XValidation:rule="!has(self.storage) || !has(self.storage.sqlite) || ((!has(self.replicas) || self.replicas <= 1) && !has(self.autoscaling))",message="sqlite storage supports a single replica: set replicas to 0 or 1 and remove autoscaling, or use postgres storage to scale out"
type WebhookReceiverSpec struct {
	// Replicas is the number of receiver Pods. Default 1. With sqlite storage
	// it must be 0 or 1. Ignored when autoscaling is set.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling adds a HorizontalPodAutoscaler on CPU (postgres storage only).
	// +optional
	Autoscaling *ReceiverAutoscaling `json:"autoscaling,omitempty"`

	// Image overrides the receiver container image (default: the image the
	// operator was built with).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Image string `json:"image,omitempty"`

	// Resources of the receiver container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// PodTemplate sets the allowed parts of the receiver Pod template.
	// +optional
	PodTemplate *ReceiverPodTemplate `json:"podTemplate,omitempty"`

	// Settings tune the receiver process (its command-line flags). Unset
	// fields keep the receiver's own defaults.
	// +optional
	Settings *ReceiverSettings `json:"settings,omitempty"`

	// TokenSecretRef names a Secret key holding the bearer token Intuned must
	// send (Authorization: Bearer <token>). When omitted, the operator
	// generates a random token into a Secret it owns (see
	// status.tokenSecretName). Changing the token keeps the previous one valid
	// for a grace window, so rotation needs no downtime.
	// +optional
	TokenSecretRef *TokenSecretReference `json:"tokenSecretRef,omitempty"`

	// Storage is where deliveries are stored: sqlite (default; one replica on
	// a PersistentVolumeClaim) or postgres (any number of replicas).
	// +kubebuilder:default={sqlite: {}}
	// +optional
	Storage *ReceiverStorage `json:"storage,omitempty"`

	// Ingress exposes the receiver through an Ingress. The public URL becomes
	// http(s)://<host><path> (https when tls is set).
	// +optional
	Ingress *ReceiverIngress `json:"ingress,omitempty"`

	// ExternalURL is the public URL of the receiver when it is exposed by
	// other means (a Gateway, a tunnel, a load balancer) or when the Ingress
	// host differs from the public host. It wins over the URL derived from
	// ingress. Must be https unless the host is loopback (localhost,
	// 127.x.x.x, [::1]) or cluster-local (*.svc, *.svc.cluster.local).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="externalURL must be an absolute http(s) URL such as https://hooks.example.com/webhooks/intuned"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() == 'https' || url(self).getHostname() == 'localhost' || url(self).getHostname().startsWith('127.') || url(self).getHostname() == '::1' || url(self).getHostname().endsWith('.svc') || url(self).getHostname().endsWith('.svc.cluster.local')",message="externalURL must use https unless the host is loopback (localhost, 127.x.x.x, [::1]) or cluster-local (*.svc, *.svc.cluster.local)"
	// +optional
	ExternalURL string `json:"externalURL,omitempty"`

	// PodDisruptionBudget adds a PodDisruptionBudget for the receiver Pods.
	// +optional
	PodDisruptionBudget *ReceiverPodDisruptionBudget `json:"podDisruptionBudget,omitempty"`

	// NetworkPolicy adds a NetworkPolicy that only admits traffic to the
	// receiver's HTTP port. It is enforced only where the cluster's network
	// plugin implements NetworkPolicy (docs/security.md).
	// +optional
	NetworkPolicy *ReceiverNetworkPolicy `json:"networkPolicy,omitempty"`

	// --- Retention (issue 23, part 1) ---

	// Retention prunes old deliveries. Unset: every delivery is kept forever.
	// +optional
	Retention *ReceiverRetention `json:"retention,omitempty"`
}

// ReceiverAutoscaling configures a HorizontalPodAutoscaler on CPU.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"
type ReceiverAutoscaling struct {
	// MinReplicas is the lower bound. Default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the upper bound.
	// +kubebuilder:validation:Minimum=1
	// +required
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetCPUUtilizationPercentage is the average CPU use (percent of the
	// request) the autoscaler aims for. Default 80.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=80
	// +optional
	TargetCPUUtilizationPercentage *int32 `json:"targetCPUUtilizationPercentage,omitempty"`
	// ScaleDownStabilizationWindowSeconds is how long the autoscaler keeps
	// the highest replica count it computed before scaling in (the HPA's
	// behavior.scaleDown.stabilizationWindowSeconds). Unset: Kubernetes'
	// default, 300. Deliveries come in bursts (a JobRun's results); a
	// shorter window frees the extra Pods sooner, a longer one keeps them
	// for the next burst.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	ScaleDownStabilizationWindowSeconds *int32 `json:"scaleDownStabilizationWindowSeconds,omitempty"`
}

// ReceiverPodTemplate is the allow-list of Pod template fields users may set.
type ReceiverPodTemplate struct {
	// Labels added to the Pods (the operator's own selector labels win).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations added to the Pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// NodeSelector of the Pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations of the Pods.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity of the Pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// PriorityClassName of the Pods.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// ImagePullSecrets of the Pods, to pull the receiver image (spec.image)
	// from a private registry.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// Env adds environment variables to the receiver container (e.g.
	// HTTPS_PROXY, TZ, GOMEMLIMIT). The variables of the flags the operator
	// sets are refused: use spec.settings for those.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['RECEIVER_LISTEN_ADDR', 'RECEIVER_INGEST_PATH', 'RECEIVER_TOKEN_FILE', 'RECEIVER_PREVIOUS_TOKEN_FILE', 'RECEIVER_READ_TOKEN_FILE', 'RECEIVER_STORE', 'RECEIVER_SQLITE_PATH', 'RECEIVER_POSTGRES_DSN', 'RECEIVER_POSTGRES_DSN_FILE', 'RECEIVER_MAX_BODY_BYTES', 'RECEIVER_DEADLINE', 'RECEIVER_LOG_LEVEL', 'RECEIVER_RETENTION_MAX_AGE', 'RECEIVER_RETENTION_MAX_BYTES']))",message="podTemplate.env must not set the variable of a receiver flag the operator sets (RECEIVER_LISTEN_ADDR, RECEIVER_INGEST_PATH, RECEIVER_TOKEN_FILE, RECEIVER_PREVIOUS_TOKEN_FILE, RECEIVER_READ_TOKEN_FILE, RECEIVER_STORE, RECEIVER_SQLITE_PATH, RECEIVER_POSTGRES_DSN, RECEIVER_POSTGRES_DSN_FILE, RECEIVER_MAX_BODY_BYTES, RECEIVER_DEADLINE, RECEIVER_LOG_LEVEL, RECEIVER_RETENTION_MAX_AGE, RECEIVER_RETENTION_MAX_BYTES): set the body limit, deadline and log level with spec.settings, pruning with spec.retention"
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
}

// ReceiverSettings are the receiver's own knobs, passed as flags.
type ReceiverSettings struct {
	// MaxBodyBytes is the largest delivery body accepted; larger ones get
	// 413 (Intuned does not retry them). Default 10Mi. At least 2.5Mi:
	// Intuned's result limit is 2 MB, plus the envelope around it.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('2560Ki')) >= 0",message="settings.maxBodyBytes must be at least 2.5Mi (2560Ki): Intuned's results reach 2 MB plus the envelope, and a smaller cap would refuse them with 413"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) <= 0",message="settings.maxBodyBytes must be at most 64Mi: each in-flight body is held in memory"
	// +optional
	MaxBodyBytes *resource.Quantity `json:"maxBodyBytes,omitempty"`
	// Deadline is the time from receiving a delivery to committing it;
	// after it the sender gets 503 with Retry-After and retries. Go
	// duration between 100ms and 5m. Default 2.5s. Keep it below the
	// IntunedJobs' sink.webhook.timeout (default 5s), or Intuned gives up
	// before the answer.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="settings.deadline must be a Go duration such as 2.5s or 500ms"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('5m'))",message="settings.deadline must be between 100ms and 5m (Intuned's longest webhook timeout)"
	// +optional
	Deadline *metav1.Duration `json:"deadline,omitempty"`
	// LogLevel of the receiver's JSON logs on stderr. Default info.
	// +kubebuilder:validation:Enum=debug;info;warn;error
	// +optional
	LogLevel string `json:"logLevel,omitempty"`
}

// TokenSecretReference selects the Secret key holding the receiver's token.
type TokenSecretReference struct {
	// Name of the Secret in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// Key inside the Secret. Default "token".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default=token
	// +optional
	Key string `json:"key,omitempty"`
}

// ReceiverStorage selects the store. Set exactly one of sqlite or postgres.
// +kubebuilder:validation:XValidation:rule="has(self.sqlite) != has(self.postgres)",message="storage must set exactly one of sqlite or postgres"
type ReceiverStorage struct {
	// SQLite stores deliveries in an embedded database on a
	// PersistentVolumeClaim (a StatefulSet with one replica).
	// +optional
	SQLite *SQLiteStorage `json:"sqlite,omitempty"`
	// Postgres stores deliveries in a PostgreSQL database; replicas are
	// stateless and may scale out.
	// +optional
	Postgres *PostgresStorage `json:"postgres,omitempty"`
}

// SQLiteStorage is the volume of the embedded SQLite store.
type SQLiteStorage struct {
	// Size of the PersistentVolumeClaim. Default 1Gi. Raising it expands the
	// existing claim when its StorageClass allows volume expansion (see the
	// VolumeResizing condition); it cannot be lowered.
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity(string(oldSelf))) >= 0",message="storage.sqlite.size cannot be lowered (volumes only grow): to use a smaller volume, back the receiver up and restore into a new WebhookReceiver"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// StorageClassName of the PersistentVolumeClaim (default: the cluster's
	// default StorageClass).
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// PostgresStorage connects the receiver to PostgreSQL.
type PostgresStorage struct {
	// DSNSecretRef selects a Secret key holding the connection string, e.g.
	// "postgres://user:pass@db.example.svc:5432/intuned?sslmode=require".
	// +required
	DSNSecretRef SecretKeyRef `json:"dsnSecretRef"`
}

// ReceiverIngress exposes the receiver through an Ingress.
type ReceiverIngress struct {
	// ClassName is the IngressClass to use (default: the cluster default).
	// +optional
	ClassName *string `json:"className,omitempty"`
	// Host is the public DNS name, e.g. "hooks.example.com".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Host string `json:"host"`
	// Path Intuned POSTs to. Default "/webhooks/intuned".
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="ingress.path must start with '/'"
	// +kubebuilder:default="/webhooks/intuned"
	// +optional
	Path string `json:"path,omitempty"`
	// TLS terminates https at the Ingress with this certificate Secret.
	// +optional
	TLS *ReceiverIngressTLS `json:"tls,omitempty"`
	// Annotations added to the Ingress (e.g. for cert-manager).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ReceiverIngressTLS names the TLS certificate of the Ingress.
type ReceiverIngressTLS struct {
	// SecretName of a kubernetes.io/tls Secret for the host.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	SecretName string `json:"secretName"`
}

// ReceiverPodDisruptionBudget configures a PodDisruptionBudget. Set exactly
// one of minAvailable or maxUnavailable.
// +kubebuilder:validation:XValidation:rule="has(self.minAvailable) != has(self.maxUnavailable)",message="podDisruptionBudget must set exactly one of minAvailable or maxUnavailable"
type ReceiverPodDisruptionBudget struct {
	// MinAvailable Pods (number or percentage such as "50%").
	// +optional
	MinAvailable *intstr.IntOrString `json:"minAvailable,omitempty"`
	// MaxUnavailable Pods (number or percentage such as "50%").
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// ReceiverNetworkPolicy configures the receiver's NetworkPolicy.
type ReceiverNetworkPolicy struct {
	// Enabled creates the NetworkPolicy. Default false.
	// +kubebuilder:default=false
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// From lists the peers allowed to reach the receiver port: the ingress
	// controller (its namespace, e.g. kubernetes.io/metadata.name:
	// ingress-nginx; an ingress controller on the host network is not a
	// Pod, admit its node addresses with an ipBlock) and any in-cluster
	// sender or reader. The manager's own Pods (its namespace and Pod
	// labels) are always added to a non-empty list: the manager reads every
	// receiver through its Service for the volume check, delivery
	// accounting and backfill. Empty: any source may reach the receiver
	// port; all other ports stay closed.
	// +listType=atomic
	// +optional
	From []networkingv1.NetworkPolicyPeer `json:"from,omitempty"`
}

// ReceiverRetention bounds what a receiver keeps. The receiver prunes the
// oldest deliveries (and bodies kept in its quarantine) in small batches, off
// the ingest path, every minute. It never prunes a delivery received less
// than 2 hours ago: Intuned retries a delivery for 1 hour after its Run, so a
// delivery pruned earlier could come back as a retry and be stored again as
// new. See docs/receiver-data.md for choosing the values.
// +kubebuilder:validation:XValidation:rule="has(self.maxAge) || has(self.maxSize)",message="retention must set maxAge, maxSize or both (remove retention to keep everything)"
type ReceiverRetention struct {
	// MaxAge prunes deliveries received longer ago than this. Go duration,
	// at least 2h (Intuned retries a delivery for 1h after its Run), e.g.
	// 720h for 30 days.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="retention.maxAge must be a Go duration such as 720h or 168h (units ns, us, ms, s, m, h; days are not a unit: write 24h)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('2h')",message="retention.maxAge must be at least 2h: Intuned retries a delivery for 1h after its Run, and a retry of a delivery pruned before then would be stored again as new"
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
	// MaxSize prunes the oldest deliveries while the receiver's data takes
	// more than this (sqlite storage only), but never one received less than
	// 2 hours ago: then the receiver reports it (metric
	// receiver_retention_size_floor_reached) and keeps them. The database
	// file keeps its largest size and reuses the freed space.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="retention.maxSize must be greater than zero"
	// +optional
	MaxSize *resource.Quantity `json:"maxSize,omitempty"`
}

// WebhookReceiverStatus is the observed state of a WebhookReceiver.
type WebhookReceiverStatus struct {
	// Conditions: Ready (see the Condition* and Reason* constants).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the metadata.generation last reconciled. It
	// (and status itself) defaults to 0: the API server fills it in on
	// every read until the controller first writes status, so kstatus
	// (kubectl wait, Flux, Argo CD) reads a new object as InProgress
	// (generation 1, observed 0), not as Current (no status at all).
	// +kubebuilder:default=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// URL is the public URL IntunedJobs push to (from externalURL or ingress).
	// +optional
	URL string `json:"url,omitempty"`
	// ReadyReplicas is the number of receiver Pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// TokenSecretName is the controller-owned Secret the receiver Pods mount
	// (keys token, previous-token during a rotation, read-token). It holds a
	// copy of tokenSecretRef's token, or the generated one.
	// +optional
	TokenSecretName string `json:"tokenSecretName,omitempty"`
	// TokenFingerprint identifies the current token: the first 16 hex
	// characters of its SHA-256 (never the token itself). IntunedJobs report
	// the fingerprint they pushed to Intuned in status.sink.tokenFingerprint.
	// +optional
	TokenFingerprint string `json:"tokenFingerprint,omitempty"`
	// PreviousTokenFingerprint is set while a rotation is in progress: the
	// previous token is still accepted until every IntunedJob referencing
	// this receiver reports the current fingerprint, then it is dropped and
	// this field cleared.
	// +optional
	PreviousTokenFingerprint string `json:"previousTokenFingerprint,omitempty"`
	// NextTokenFingerprint is set while a new token is staged: the receiver
	// Pods already accept it, and it becomes the current token (the one
	// IntunedJobs push) once kubelet has had time to refresh the mounted
	// Secret in every Pod.
	// +optional
	NextTokenFingerprint string `json:"nextTokenFingerprint,omitempty"`
}

// WebhookReceiver runs an in-cluster receiver for Intuned's webhook sink and
// publishes its URL in status.url. IntunedJobs reference it with
// spec.sink.webhook.receiverRef.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whr,categories=intuned
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookReceiver struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Spec WebhookReceiverSpec `json:"spec,omitempty"`
	// +kubebuilder:default={}
	// +optional
	Status WebhookReceiverStatus `json:"status,omitempty"`
}

// WebhookReceiverList contains a list of WebhookReceiver.
// +kubebuilder:object:root=true
type WebhookReceiverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookReceiver `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WebhookReceiver{}, &WebhookReceiverList{})
}
