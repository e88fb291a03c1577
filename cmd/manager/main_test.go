package main

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestParseNamespacedName(t *testing.T) {
	tests := []struct {
		in      string
		want    types.NamespacedName
		wantErr bool
	}{
		{"", types.NamespacedName{}, false},
		{"intuned-system/intuned-credentials", types.NamespacedName{Namespace: "intuned-system", Name: "intuned-credentials"}, false},
		{"no-namespace", types.NamespacedName{}, true},
		{"/name", types.NamespacedName{}, true},
		{"ns/", types.NamespacedName{}, true},
		{"a/b/c", types.NamespacedName{}, true},
	}
	for _, tt := range tests {
		got, err := parseNamespacedName(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseNamespacedName(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseNamespaces(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"team-a", []string{"team-a"}},
		{"team-a,team-b", []string{"team-a", "team-b"}},
		{" team-a, ,team-b,team-a ", []string{"team-a", "team-b"}},
	}
	for _, tt := range tests {
		if got := parseNamespaces(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("parseNamespaces(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckWatched(t *testing.T) {
	creds := types.NamespacedName{Namespace: "team-a", Name: "intuned-credentials"}
	tests := []struct {
		namespaces []string
		secret     types.NamespacedName
		wantErr    bool
	}{
		{nil, creds, false}, // every namespace
		{[]string{"team-a", "team-b"}, creds, false},
		{[]string{"team-a"}, types.NamespacedName{}, false}, // no default Secret
		{[]string{"team-b"}, creds, true},
	}
	for _, tt := range tests {
		if err := checkWatched(tt.namespaces, tt.secret); (err != nil) != tt.wantErr {
			t.Errorf("checkWatched(%q, %v) = %v; want error: %v", tt.namespaces, tt.secret, err, tt.wantErr)
		}
	}
}

// TestRunRejectsBadShard: a --shard value that cannot name a Lease and
// finalizers stops the manager before it starts.
func TestRunRejectsBadShard(t *testing.T) {
	for _, shard := range []string{"Shard_A", "a.b", strings.Repeat("a", 41)} {
		if err := run(options{shard: shard}); err == nil || !strings.Contains(err.Error(), "--shard") {
			t.Errorf("run with --shard=%s: %v; want a --shard error", shard, err)
		}
	}
}
