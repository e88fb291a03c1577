package main

import (
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
