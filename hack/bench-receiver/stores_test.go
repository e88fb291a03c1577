package main

import (
	"encoding/json"
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
		name string
		want caseSpec
		err  bool
	}{
		{"sqlite", caseSpec{kind: "sqlite"}, false},
		{"sqlite@1M", caseSpec{kind: "sqlite", rows: 1_000_000}, false},
		{"sqlite-base@10M+prune", caseSpec{kind: "sqlite-base", rows: 10_000_000, prune: true}, false},
		{"sqlite@1M+prune100", caseSpec{kind: "sqlite", rows: 1_000_000, prune: true, pruneBatch: 100}, false},
		{"sqlite@1M+prunep5ms", caseSpec{kind: "sqlite", rows: 1_000_000, prune: true, prunePause: 5 * time.Millisecond}, false},
		{"sqlite@1M+prune100p1ms", caseSpec{kind: "sqlite", rows: 1_000_000, prune: true, pruneBatch: 100, prunePause: time.Millisecond}, false},
		{"sqlite@500k", caseSpec{kind: "sqlite", rows: 500_000}, false},
		{"sqlite@1M+prunex", caseSpec{}, true},
		{"sqlite@1M+prunepx", caseSpec{}, true},
		{"sqlite+prune", caseSpec{}, true},
		{"postgres@1M", caseSpec{}, true},
		{"sqlite@x", caseSpec{}, true},
	} {
		c, err := parseCase(tc.name)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if !tc.err && c != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, c, tc.want)
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
