// Package realistic makes sink bodies shaped like the ones Intuned sends, for measurements of the
// stores (sizing, benchmarks). It is not a test package: the benchmark programs use it too, and
// programs must not link package testing (test/deps).
package realistic

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// Delivery is delivery i of a store that holds JobRuns of 100 Runs: a sink body shaped
// like the guide's "details" example (docs/intuned-api.md), whose result lists scraped products
// until the body is about size bytes, with a random 21-character runId and UUID-like JobRun ids
// as Intuned sends them. Retention's sizing guidance is measured with it.
func Delivery(r *rand.Rand, i, size int, at time.Time) store.Delivery {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	id := make([]byte, 21)
	for k := range id {
		id[k] = alphabet[r.IntN(len(alphabet))]
	}
	runID := string(id)
	jobRun := fmt.Sprintf("%08x-5c6b-413e-995a-%012x", i/100, i/100)
	var products []string
	for n := 0; n == 0 || 400+len(strings.Join(products, ",")) < size; n++ {
		p := r.IntN(100000)
		products = append(products, fmt.Sprintf(`{"id":"prod-%d","name":"Product %d with a longer name","price":"$%d.%02d","url":"https://www.scrapingcourse.com/ecommerce/product/item-%d/"}`,
			p, p, r.IntN(500), r.IntN(100), p))
	}
	body := fmt.Sprintf(`{"workspaceId":"e95cb8d1-f212-4c04-ace1-c0f77e8708c7","apiInfo":{"name":"details","runId":%q,`+
		`"parameters":{"detailsUrl":"https://www.scrapingcourse.com/ecommerce/product/abominable-hoodie/","name":"Abominable Hoodie"},`+
		`"result":{"status":"completed","result":[%s],"statusCode":200}},"project":{"id":"482bf507-5fcc-43ed-9443-d8fff86015c4",`+
		`"name":"ecommerce-scraper-quickstart"},"projectJob":{"id":"default-with-webhook"},"projectJobRun":{"id":%q}}`,
		runID, strings.Join(products, ","), jobRun)
	return store.Delivery{RunID: runID, JobID: "default-with-webhook", JobRunID: jobRun, Project: "ecommerce-scraper-quickstart",
		APIName: "details", ResultStatus: "completed", ReceivedAt: at, Body: []byte(body)}
}
