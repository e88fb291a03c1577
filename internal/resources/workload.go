package resources

import (
	"maps"
	"path"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// terminationGracePeriod covers the receiver's default --shutdown-delay (5s:
// still serving while the Service and the Ingress controller stop routing
// to the Pod) and --shutdown-grace (20s: in-flight deliveries commit), with
// 5s to spare, before the kubelet kills it.
const terminationGracePeriod int64 = 30

// Volume names inside the Pod.
const (
	tokenVolume    = "token"
	postgresVolume = "postgres-dsn"
	tmpVolume      = "tmp"
)

// defaultResources apply when spec.resources is unset. A CPU request is
// needed for the HPA's utilisation target; the memory limit bounds a
// receiver whose in-flight bodies are capped by --max-in-flight and
// --max-body-bytes.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("512Mi"),
		},
	}
}

// Deployment runs stateless receivers for postgres storage. Replicas are
// left unset when an HPA owns them, so applying this never fights the HPA.
// Returns nil for sqlite storage.
func Deployment(whr *v1alpha1.WebhookReceiver, defaultImage string) *appsv1.Deployment {
	if !UsesPostgres(whr) {
		return nil
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec: appsv1.DeploymentSpec{
			Replicas: workloadReplicas(whr),
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(whr)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				// Bring a new Pod up before taking an old one down: a single
				// replica keeps serving through a rollout.
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: podTemplate(whr, defaultImage),
		},
	}
}

// StatefulSet runs the single SQLite receiver with its database on a PVC
// from a volumeClaimTemplate. The PVC outlives the StatefulSet (the
// Kubernetes default retention), so deleting or switching a receiver never
// deletes stored deliveries. Returns nil for postgres storage.
func StatefulSet(whr *v1alpha1.WebhookReceiver, defaultImage string) *appsv1.StatefulSet {
	if UsesPostgres(whr) {
		return nil
	}
	size := resource.MustParse(v1alpha1.DefaultSQLiteSize)
	var class *string
	if whr.Spec.Storage != nil && whr.Spec.Storage.SQLite != nil {
		if s := whr.Spec.Storage.SQLite.Size; s != nil {
			size = *s
		}
		class = whr.Spec.Storage.SQLite.StorageClassName
	}
	tmpl := podTemplate(whr, defaultImage)
	tmpl.Spec.Containers[0].VolumeMounts = append(tmpl.Spec.Containers[0].VolumeMounts,
		corev1.VolumeMount{Name: DataVolumeName, MountPath: DataDir})
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec: appsv1.StatefulSetSpec{
			Replicas:    workloadReplicas(whr),
			ServiceName: ChildName(whr),
			Selector:    &metav1.LabelSelector{MatchLabels: SelectorLabels(whr)},
			Template:    tmpl,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type: appsv1.RollingUpdateStatefulSetStrategyType,
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
				ObjectMeta: metav1.ObjectMeta{
					Name:   DataVolumeName,
					Labels: Labels(whr),
				},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: class,
					VolumeMode:       ptr.To(corev1.PersistentVolumeFilesystem),
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: size},
					},
				},
			}},
		},
	}
}

// workloadReplicas is nil when an HPA manages the replica count.
func workloadReplicas(whr *v1alpha1.WebhookReceiver) *int32 {
	if whr.Spec.Autoscaling != nil {
		return nil
	}
	return ptr.To(Replicas(whr))
}

// podTemplate is the receiver Pod: restricted Pod Security profile,
// read-only root filesystem, tokens and DSN as files (never on the command
// line or in env), and the user's allow-listed Pod fields.
func podTemplate(whr *v1alpha1.WebhookReceiver, defaultImage string) corev1.PodTemplateSpec {
	labels := map[string]string{}
	annotations := map[string]string(nil)
	spec := corev1.PodSpec{
		ServiceAccountName: ChildName(whr),
		// The receiver never calls the Kubernetes API.
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(terminationGracePeriod),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr.To(true),
			RunAsUser:    ptr.To(RunAsID),
			RunAsGroup:   ptr.To(RunAsID),
			// Makes the SQLite volume and the Secret files readable and
			// writable by the receiver's group.
			FSGroup:             ptr.To(RunAsID),
			FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
			SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{receiverContainer(whr, defaultImage)},
		Volumes: []corev1.Volume{
			{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName:  TokenSecretName(whr),
				DefaultMode: ptr.To[int32](0o440),
			}}},
			{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
	if UsesPostgres(whr) {
		ref := whr.Spec.Storage.Postgres.DSNSecretRef
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: postgresVolume, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{
				SecretName:  ref.Name,
				Items:       []corev1.KeyToPath{{Key: ref.Key, Path: PostgresDSNFile}},
				DefaultMode: ptr.To[int32](0o440),
			},
		}})
	}
	if pt := whr.Spec.PodTemplate; pt != nil {
		maps.Copy(labels, pt.Labels)
		if len(pt.Annotations) > 0 {
			annotations = maps.Clone(pt.Annotations)
		}
		spec.NodeSelector = pt.NodeSelector
		spec.Tolerations = pt.Tolerations
		spec.Affinity = pt.Affinity
		spec.PriorityClassName = pt.PriorityClassName
		applyPodSettings(pt, &spec)
	}
	// Our labels last: the selector must match whatever the user adds.
	maps.Copy(labels, Labels(whr))
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec:       spec,
	}
}

// ReceiverArgs are the receiver's flags (see cmd/receiver --help). The
// token files are read again every few seconds, so rotations need no
// restart; a missing previous-token file means "no previous token".
func ReceiverArgs(whr *v1alpha1.WebhookReceiver) []string {
	args := []string{
		"--listen-addr=:8080",
		"--ingest-path=" + IngestPath(whr),
		"--token-file=" + path.Join(TokenDir, v1alpha1.TokenSecretKeyToken),
		"--previous-token-file=" + path.Join(TokenDir, v1alpha1.TokenSecretKeyPreviousToken),
		"--read-token-file=" + path.Join(TokenDir, v1alpha1.TokenSecretKeyReadToken),
	}
	args = append(args, settingsArgs(whr)...)
	args = append(args, retentionArgs(whr)...)
	if UsesPostgres(whr) {
		return append(args, "--store=postgres", "--postgres-dsn-file="+path.Join(PostgresDSNDir, PostgresDSNFile))
	}
	return append(args, "--store=sqlite", "--sqlite-path="+path.Join(DataDir, SQLiteFile))
}

func receiverContainer(whr *v1alpha1.WebhookReceiver, defaultImage string) corev1.Container {
	res := defaultResources()
	if whr.Spec.Resources != nil {
		res = *whr.Spec.Resources.DeepCopy()
	}
	mounts := []corev1.VolumeMount{
		{Name: tokenVolume, MountPath: TokenDir, ReadOnly: true},
		{Name: tmpVolume, MountPath: TmpDir},
	}
	if UsesPostgres(whr) {
		mounts = append(mounts, corev1.VolumeMount{Name: postgresVolume, MountPath: PostgresDSNDir, ReadOnly: true})
	}
	probe := func(p string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: p, Port: intstr.FromString(HTTPPortName),
			}},
			PeriodSeconds:    period,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
		}
	}
	return corev1.Container{
		Name:    ContainerName,
		Image:   Image(whr, defaultImage),
		Command: []string{ReceiverCommand},
		Args:    ReceiverArgs(whr),
		Ports: []corev1.ContainerPort{{
			Name: HTTPPortName, ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources:      res,
		VolumeMounts:   mounts,
		LivenessProbe:  probe("/healthz", 10),
		ReadinessProbe: probe("/readyz", 5),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}
