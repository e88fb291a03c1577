package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
)

// TestShardedManagersElectPerShard runs the manager binary as config/sharding
// does, with leader election on: the default shard and two replicas of
// shard b. Each shard elects its own leader (two Leases, the default
// shard's keeping the unsharded name), so both shards reconcile at once,
// each only its own objects (the status of a receiver labelled for shard b
// is written by shard b's field manager, the other one's is not).
func TestShardedManagersElectPerShard(t *testing.T) {
	env, dir, bin, kubeconfig := managerEnv(t)
	ctx := context.Background()
	c := env.Client
	const ns = "sharded"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	elect := []string{"--leader-elect=true", "--leader-election-namespace=" + ns}
	startManagerProcess(t, bin, kubeconfig, filepath.Join(dir, "default.log"), elect...)
	for i := range 2 {
		startManagerProcess(t, bin, kubeconfig, filepath.Join(dir, fmt.Sprintf("b-%d.log", i)), append(elect, "--shard=b")...)
	}

	b, err := sharding.Parse("b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		byB    bool
	}{
		{"probe-default", nil, false},
		{"probe-b", map[string]string{sharding.Label: "b"}, true},
	} {
		whr := waitReconciledWith(t, c, ns, tc.name, tc.labels)
		var writers []string
		for _, m := range whr.ManagedFields {
			if m.Subresource == "status" {
				writers = append(writers, m.Manager)
			}
		}
		if slices.Contains(writers, b.FieldOwner()) != tc.byB || len(writers) != 1 {
			t.Errorf("%s: status written by %v", tc.name, writers)
		}
	}

	var leases coordinationv1.LeaseList
	if err := c.List(ctx, &leases, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range leases.Items {
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Errorf("Lease %s has no holder", l.Name)
		}
		names = append(names, l.Name)
	}
	slices.Sort(names)
	if want := slices.Sorted(slices.Values([]string{leaderElectionID, b.LeaderElectionID(leaderElectionID)})); !slices.Equal(names, want) {
		t.Errorf("Leases %v; want %v", names, want)
	}
}
