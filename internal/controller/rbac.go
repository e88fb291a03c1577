package controller

// RBAC of the manager, generated into config/rbac/role.yaml by `make manifests`.
// Kept in one file (not on the reconcilers) so the list survives when a
// reconciler is rewritten.

// IntunedJob controller: its own objects, credentials/header/S3/proxy Secrets,
// the WebhookReceivers it links to, and Events for every external write.
// +kubebuilder:rbac:groups=intuned.io,resources=intunedjobs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=intuned.io,resources=intunedjobs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=intuned.io,resources=intunedjobs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=intuned.io,resources=webhookreceivers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// WebhookReceiver controller: its own objects (status only), the children it
// applies with server-side apply (create+patch; delete for the optional ones
// and the workload kind a storage switch replaces), the Secrets it reads
// (tokenSecretRef, DSN) and the IntunedJobs whose token fingerprints end a
// rotation. Never update: every write is an apply, a status patch or (patch
// of the receiver itself) its read-auth finalizer, intuned.io/read-auth-binding.
// The read-auth ClusterRoleBinding is edited through a hand-written role
// (config/rbac/receiver_auth_delegator_binding.yaml), by name: this role is
// also bound per namespace (config/namespaced), where a cluster-scoped rule
// means nothing, and that install has no read-auth binding.
// +kubebuilder:rbac:groups=intuned.io,resources=webhookreceivers,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=intuned.io,resources=webhookreceivers/status,verbs=get;patch
// +kubebuilder:rbac:groups=intuned.io,resources=webhookreceivers/finalizers,verbs=update
// +kubebuilder:rbac:groups=intuned.io,resources=intunedjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets;services;serviceaccounts,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete

// WebhookReceiver controller, volume growth: a SQLite receiver's data claim
// (made by the StatefulSet controller) is expanded by patching its
// spec.resources.requests.storage; watched for the resize's progress. The
// claim's StorageClass is read (get only, uncached) to know whether it
// allows expansion. No create, update or delete of either.
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get
