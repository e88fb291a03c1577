// Package sharding splits the objects of one cluster between several
// manager instances, Flux's way: each manager runs with a shard name and
// owns the IntunedJobs and WebhookReceivers whose sharding.intuned.io/key
// label names it; the manager without a shard name owns the objects
// without the label (the default shard). Each shard elects its own leader,
// so shards never wait for each other, while the replicas of one shard
// still have one active leader. See docs/sharding.md.
package sharding

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Label is the shard label (intunedv1alpha1.LabelShard).
const Label = intunedv1alpha1.LabelShard

// Shard names one manager's share of the objects; the zero Shard is the
// default shard.
type Shard struct{ name string }

// Default is the shard of the objects without the label.
var Default = Shard{}

// MaxNameLength bounds a shard name, so that the finalizer names made
// from it (Finalizer) stay within the 63 characters Kubernetes allows.
const MaxNameLength = 40

// Parse checks a --shard value: empty is the default shard, anything else
// must be a DNS label of at most MaxNameLength characters (it also names
// the shard's leader election Lease and finalizers).
func Parse(name string) (Shard, error) {
	if name == "" {
		return Default, nil
	}
	errs := validation.IsDNS1123Label(name)
	if len(name) > MaxNameLength {
		errs = append(errs, fmt.Sprintf("must be no more than %d characters", MaxNameLength))
	}
	if len(errs) > 0 {
		return Default, fmt.Errorf("shard name %q: %s", name, strings.Join(errs, "; "))
	}
	return Shard{name: name}, nil
}

// Name is the shard's name ("" for the default shard).
func (s Shard) Name() string { return s.name }

// IsDefault reports whether s is the default shard.
func (s Shard) IsDefault() bool { return s.name == "" }

// String is the name, or "default" (for logs and messages).
func (s Shard) String() string {
	if s.IsDefault() {
		return "default"
	}
	return s.name
}

// Of is the shard an object with these labels belongs to.
func Of(objLabels map[string]string) Shard { return Shard{name: objLabels[Label]} }

// Selector selects the objects of the shard: the label equal to the name,
// or (default shard) no label at all. Label selectors cannot express "no
// label, or a label no shard serves": an object labelled with a shard no
// manager runs is reconciled by no one (docs/sharding.md).
func (s Shard) Selector() labels.Selector {
	var req *labels.Requirement
	var err error
	if s.IsDefault() {
		req, err = labels.NewRequirement(Label, selection.DoesNotExist, nil)
	} else {
		req, err = labels.NewRequirement(Label, selection.Equals, []string{s.name})
	}
	if err != nil {
		panic(err) // the name was validated by Parse
	}
	return labels.NewSelector().Add(*req)
}

// Owned is the selector of the objects the WebhookReceiver controller
// applies (base: the managed-by label) restricted to this shard: each
// shard caches only its own receivers' children, which carry the shard
// label of their receiver.
func (s Shard) Owned(base labels.Selector) labels.Selector {
	reqs, _ := s.Selector().Requirements()
	return base.Add(reqs...)
}

// LeaderElectionID is base for the default shard (an unsharded install
// keeps its Lease) and "<name>.<base>" for a named one: the replicas of
// one shard elect one leader, and no shard waits for another's Lease.
func (s Shard) LeaderElectionID(base string) string {
	if s.IsDefault() {
		return base
	}
	return s.name + "." + base
}

// FieldOwner is the field manager of the shard's writes ("" for the
// default shard: the client's default), so managedFields tell which shard
// last wrote an object's status. Server-side applies of children keep one
// field manager for every shard (a receiver moved between shards must not
// gain a second owner of its fields).
func (s Shard) FieldOwner() string {
	if s.IsDefault() {
		return ""
	}
	return "intuned-operator-shard-" + s.name
}

// Finalizer is the shard's own copy of a finalizer it keeps on objects
// every shard may need (the credentials Secret several shards' jobs read,
// a namespace's RoleBinding): each shard adds and removes only its own,
// from what it sees, so one shard never removes a finalizer another shard
// still needs. The default shard uses base itself (what an unsharded
// install has set); shard "a" appends ".a", e.g.
// intuned.io/credentials-in-use.a.
func (s Shard) Finalizer(base string) string {
	if s.IsDefault() {
		return base
	}
	return base + "." + s.name
}
