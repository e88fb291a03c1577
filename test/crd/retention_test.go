package crd

import (
	"strings"
	"testing"
)

// TestRetentionValidation: spec.retention's CEL rules refuse what would prune inside Intuned's
// retry window or what a store cannot apply, with a message that says why, and accept the rest.
func TestRetentionValidation(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	postgres := "storage: {postgres: {dsnSecretRef: {name: db, key: dsn}}}\n"
	for _, tt := range []struct {
		name, spec, wantMsg string // wantMsg empty: accepted
	}{
		{"max age below the retry window", "retention: {maxAge: 1h59m}", "retention.maxAge must be at least 2h: Intuned retries a delivery for 1h after its Run"},
		{"max age in days", "retention: {maxAge: 30d}", "days are not a unit: write 24h"},
		{"empty retention", "retention: {}", "retention must set maxAge, maxSize or both"},
		{"max size with postgres", postgres + "retention: {maxSize: 10Gi}", "retention.maxSize applies to sqlite storage only"},
		{"max size zero", "retention: {maxSize: \"0\"}", "retention.maxSize must be greater than zero"},
		{"max size as large as the volume", "storage: {sqlite: {size: 5Gi}}\nretention: {maxSize: 5Gi}", "retention.maxSize must be less than storage.sqlite.size"},
		{"max size above the default 1Gi volume", "retention: {maxSize: 2Gi}", "retention.maxSize must be less than storage.sqlite.size"},
		{"max age of exactly 2h", "retention: {maxAge: 2h}", ""},
		{"max age of 30 days", "retention: {maxAge: 720h}", ""},
		{"max size below the default volume", "retention: {maxSize: 800Mi}", ""},
		{"max size as a number of bytes", "retention: {maxSize: 500000000}", ""},
		{"both bounds", "storage: {sqlite: {size: 20Gi}}\nretention: {maxAge: 2160h, maxSize: 15Gi}", ""},
		{"max age with postgres", postgres + "retention: {maxAge: 168h}", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := decodeYAML(t, receiverYAML("recv-"+strings.ReplaceAll(tt.name, " ", "-"), tt.spec))
			u.SetNamespace(ns)
			err := e.Client.Create(ctxT(t), u)
			switch {
			case tt.wantMsg == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.wantMsg != "" && err == nil:
				t.Fatalf("accepted, want rejection containing %q", tt.wantMsg)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Fatalf("rejected with\n  %v\nwant message containing %q", err, tt.wantMsg)
			}
		})
	}
}
