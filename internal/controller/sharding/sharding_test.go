package sharding

import (
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "default", false},
		{"shard-a", "shard-a", false},
		{"Shard_A", "", true}, // not a DNS label: it names a Lease and finalizers
		{"a.b", "", true},
		{"a234567890123456789012345678901234567890", "a234567890123456789012345678901234567890", false},
		{"a2345678901234567890123456789012345678901", "", true}, // 41 > MaxNameLength
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && s.String() != tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %q, error %v", tt.in, s, err, tt.want, tt.wantErr)
		}
	}
}

// TestSelector: every object belongs to exactly one shard, the one Of names.
func TestSelector(t *testing.T) {
	a, _ := Parse("a")
	b, _ := Parse("b")
	shards := []Shard{Default, a, b}
	objects := []map[string]string{
		nil,
		{"app": "x"},
		{Label: "a"},
		{Label: "b", "app": "x"},
		{Label: "c"}, // a shard no manager runs: reconciled by none
	}
	for _, l := range objects {
		var owners []Shard
		for _, s := range shards {
			if s.Selector().Matches(labels.Set(l)) {
				owners = append(owners, s)
			}
		}
		want := Of(l)
		switch {
		case want.Name() == "c" && len(owners) != 0:
			t.Errorf("labels %v: owned by %v; want none", l, owners)
		case want.Name() != "c" && (len(owners) != 1 || owners[0] != want):
			t.Errorf("labels %v: owned by %v; want exactly %v", l, owners, want)
		}
	}
	owned := labels.SelectorFromSet(labels.Set{"managed-by": "us"})
	if !a.Owned(owned).Matches(labels.Set{"managed-by": "us", Label: "a"}) || a.Owned(owned).Matches(labels.Set{Label: "a"}) {
		t.Errorf("Owned(%v) = %v: want both requirements", owned, a.Owned(owned))
	}
	if owned.String() != "managed-by=us" {
		t.Errorf("Owned changed its base selector: %v", owned)
	}
}

func TestNames(t *testing.T) {
	long, err := Parse("a234567890123456789012345678901234567890")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Parse("a")
	for _, tt := range []struct{ got, want string }{
		{Default.LeaderElectionID("intuned-operator.intuned.io"), "intuned-operator.intuned.io"},
		{a.LeaderElectionID("intuned-operator.intuned.io"), "a.intuned-operator.intuned.io"},
		{Default.Finalizer(intunedv1alpha1.FinalizerCredentialsInUse), "intuned.io/credentials-in-use"},
		{a.Finalizer(intunedv1alpha1.FinalizerCredentialsInUse), "intuned.io/credentials-in-use.a"},
		{Default.FieldOwner(), ""},
		{a.FieldOwner(), "intuned-operator-shard-a"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// Finalizer names are qualified names: at most 63 characters after the
	// domain, even for the longest shard name.
	for _, base := range []string{intunedv1alpha1.FinalizerCredentialsInUse, intunedv1alpha1.FinalizerManagerAccess} {
		if errs := validation.IsQualifiedName(long.Finalizer(base)); len(errs) > 0 {
			t.Errorf("%s: %v", long.Finalizer(base), errs)
		}
	}
	if errs := validation.IsDNS1123Subdomain(long.LeaderElectionID("intuned-operator.intuned.io")); len(errs) > 0 {
		t.Errorf("lease name: %v", errs)
	}
}
