package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSeedDelivery: a pre-filled delivery's body is valid JSON that names its own runId and JobRun.
func TestSeedDelivery(t *testing.T) {
	g := newSeedBodies(rand.New(rand.NewPCG(1, 2)))
	seen := map[string]bool{}
	for i := range 3 * seedPool {
		d := g.delivery(i, 3*seedPool, time.Now())
		var body struct {
			APIInfo struct {
				RunID string `json:"runId"`
			} `json:"apiInfo"`
			ProjectJobRun struct {
				ID string `json:"id"`
			} `json:"projectJobRun"`
		}
		if err := json.Unmarshal(d.Body, &body); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if body.APIInfo.RunID != d.RunID || body.ProjectJobRun.ID != d.JobRunID || seen[d.RunID] {
			t.Fatalf("delivery %d: body names run %q of JobRun %q, want %q of %q (unique)", i, body.APIInfo.RunID, body.ProjectJobRun.ID, d.RunID, d.JobRunID)
		}
		seen[d.RunID] = true
	}
}

func TestParseCase(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		err        bool
	}{
		{"sqlite", "{sqlite 0 false 0}", false},
		{"sqlite@1M", "{sqlite 1000000 false 0}", false},
		{"sqlite-base@10M+prune", "{sqlite-base 10000000 true 0}", false},
		{"sqlite@1M+prune100", "{sqlite 1000000 true 100}", false},
		{"sqlite@500k", "{sqlite 500000 false 0}", false},
		{"sqlite@1M+prunex", "", true},
		{"sqlite+prune", "", true},
		{"postgres@1M", "", true},
		{"sqlite@x", "", true},
	} {
		c, err := parseCase(tc.name)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if got := fmt.Sprint(c); !tc.err && got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func BenchmarkSeedDelivery(b *testing.B) {
	g := newSeedBodies(rand.New(rand.NewPCG(1, 2)))
	t0 := time.Now()
	for i := range b.N {
		g.delivery(i, 1_000_000, t0)
	}
}
